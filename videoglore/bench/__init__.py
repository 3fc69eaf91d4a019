"""Benchmarks reached through ``run.py benchmark NAME``: modules with HELP, add_arguments, run."""

from videoglore.bench import data, glore, test, train

BENCHMARKS = {"data": data, "glore": glore, "train": train, "test": test}
