"""Benchmarks reached through ``run.py benchmark NAME``; each module has HELP, add_arguments, run."""

from videoglore.bench import data, glore

BENCHMARKS = {"data": data, "glore": glore}
