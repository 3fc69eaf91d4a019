"""Benchmarks reached through ``run.py benchmark NAME``, kept apart from the library.

Each benchmark has one folder holding its code, its data generator and its recorded results::

    loading/   clip-loading speed of the readers (bench.py), the cost of a large prepared list
               (lists.py, list_probe.py); RESULTS in ../RESULTS.md
    speed/     GPU training and multi-view testing throughput, MFU (train.py, test.py, common.py)
    glore/     does GloRe help? relational videos (relational.py), runs (bench.py), report.py,
               RESULTS.md, results.json, val_vs_time.png
    prepare/   prepare's videos/s per core and GB per 1,000 videos on Kinetics-like sources
               (sources.py, bench.py; RESULTS in ../RESULTS.md)

Every benchmark module has ``HELP``, ``add_arguments(parser)`` and ``run(args)``. They import
torch; ``BENCHMARKS`` names them without importing them, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BENCHMARKS = {
    "data": "benchmarks.loading.bench",
    "glore": "benchmarks.glore.bench",
    "train": "benchmarks.speed.train",
    "test": "benchmarks.speed.test",
    "pipeline": "benchmarks.loading.pipeline",
    "lists": "benchmarks.loading.lists",
    "prepare": "benchmarks.prepare.bench",
}


def load_benchmark(name: str) -> ModuleType:
    """The module of benchmark ``name`` (a key of ``BENCHMARKS``)."""
    return importlib.import_module(BENCHMARKS[name])
