"""``run.py benchmark prepare``: prepare's throughput on Kinetics-like sources (bench.py) and the
source generator (sources.py); results in ``benchmarks/RESULTS.md``, "Prepare throughput"."""
