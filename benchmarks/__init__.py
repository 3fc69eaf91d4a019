"""Benchmarks reached through ``run.py benchmark NAME``, kept apart from the library.

Each benchmark has one folder holding its code, its data generator and its recorded results::

    loading/   clip-loading speed of the readers (bench.py; RESULTS in ../RESULTS.md)
    speed/     GPU training and multi-view testing throughput, MFU (train.py, test.py, common.py)
    glore/     does GloRe help? relational videos (relational.py), runs (bench.py), report.py,
               RESULTS.md, results.json, val_vs_time.png

Every benchmark module has ``HELP``, ``add_arguments(parser)`` and ``run(args)``.
"""

from benchmarks.glore import bench as glore
from benchmarks.loading import bench as data
from benchmarks.loading import pipeline
from benchmarks.speed import test, train

BENCHMARKS = {"data": data, "glore": glore, "train": train, "test": test, "pipeline": pipeline}
