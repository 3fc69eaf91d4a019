"""What a large prepared list costs: reading time, the parent's memory, a forked worker's memory.

    generated list (Kinetics-700-sized, 650,000 rows, cached) ─┬─ list_probe.py, fresh process
                                                              │   (PYTHONPATH = each --code)
                                                              └─▶ one table row per checkout

Every rank reads the train and val lists at start-up, and every DataLoader worker is a fork of
its rank's process: records held as Python objects are copied into each worker as soon as it
reads them (reference counts write to the shared pages), 8 ranks × 14 workers times over.
Issue 18 item 2's targets for 650,000 rows: reading ≤ 3 s CPU, the parent's memory for the
records ≤ 150 MB, a worker's private memory after touching every record ≤ 50 MB.

The rows look like a prepared K700 train list: ``videos/train/<class>/<YouTube id>_<start>_<end>
.mp4``, 700 class names with spaces, 250-300 frames, 340×256 or 256×340; nothing is quoted, as
in Kinetics lists. ``--quoted`` puts a comma into one class name in 50, so that 2 % of the rows
are quoted and the reader needs the csv module. ``--code DIR`` measures another checkout's
reader (e.g. main's, for a before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.report import BenchmarkResult, finish, markdown_table
from data_prep.lists import VideoRecord, write_video_list

HELP = "reading a 650k-row prepared list: CPU time, parent memory, a forked worker's USS"
REPO = Path(__file__).resolve().parents[2]  # the checkout this benchmark belongs to
PROBE = Path(__file__).with_name("list_probe.py")
TARGETS = {"read_cpu_s": 3.0, "retained_mb": 150.0, "worker_uss_mb": 50.0}
COLUMNS = [
    ("code", "code", ""),
    ("records type", "type", ""),
    ("rows", "rows", "d"),
    ("read CPU s", "read_cpu_s", ".2f"),
    ("parent retained MB", "retained_mb", ".0f"),
    ("parent peak MB", "peak_mb", ".0f"),
    ("worker USS at fork MB", "worker_start_mb", ".1f"),
    ("worker USS after touching MB", "worker_uss_mb", ".1f"),
    ("touch µs/record", "touch_us", ".2f"),
]
ID_CHARS = np.array(list(string.ascii_letters + string.digits + "-_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=650_000, help="list rows (default 650,000)")
    parser.add_argument(
        "--code",
        nargs="+",
        default=[str(REPO)],
        help="checkouts whose data_prep.lists to measure (default: this one)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="probes per checkout (min kept)")
    parser.add_argument(
        "--cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "videoglore", "bench_lists"),
        help="folder for the generated list (written once per size)",
    )
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")
    parser.add_argument("--quoted", action="store_true", help="2 %% of the rows quoted")
    parser.add_argument("--quick", action="store_true", help="2,000 rows (a smoke test)")


def run(args: argparse.Namespace) -> BenchmarkResult:
    rows = 2_000 if args.quick else args.rows
    path = generated_list(Path(args.cache), rows, args.quoted)
    results = []
    for code in args.code:
        probes = [probe(path, Path(code)) for _ in range(max(1, args.repeats))]
        best = {key: min(p[key] for p in probes) for key in TARGETS | {"peak_mb": 0}}
        results.append({**probes[0], **best, "code": str(code), "repeats": len(probes)})
    report = dict(
        list=str(path),
        quoted=args.quoted,
        list_mb=path.stat().st_size / 2**20,
        targets=TARGETS,
        rows=results,
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    return finish(report, format_table(report), args.out)


def probe(path: Path, code: Path) -> dict:
    """One fresh process reading ``path`` with ``code``'s ``data_prep.lists`` (list_probe.py)."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(PROBE), str(path)],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"list probe failed with {code}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def generated_list(cache: Path, rows: int, quoted: bool = False) -> Path:
    """A K700-like prepared train list of ``rows`` rows, written once (``write_video_list``);
    ``quoted``: one class name in 50 holds a comma (the csv module quotes those rows)."""
    path = cache / f"train_{rows}{'_quoted' if quoted else ''}.csv"
    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    comma = [("," if quoted and c % 50 == 0 else "") for c in range(700)]
    names = [f"class {c:03d} doing things{comma[c]} {c % 7}" for c in range(700)]
    labels = rng.integers(0, len(names), rows)
    ids = ["".join(chars) for chars in ID_CHARS[rng.integers(0, len(ID_CHARS), (rows, 11))]]
    starts = rng.integers(0, 300, rows)
    frames = rng.integers(250, 301, rows)
    portrait = rng.random(rows) < 0.1
    records = (
        VideoRecord(
            f"videos/train/{names[label].replace(' ', '_')}/{ids[i]}_{starts[i]:06d}_"
            f"{starts[i] + 10:06d}.mp4",
            int(label),
            names[label],
            int(frames[i]),
            29.97,
            256 if portrait[i] else 340,
            340 if portrait[i] else 256,
        )
        for i, label in enumerate(labels.tolist())
    )
    write_video_list(path, records)
    return path


def format_table(report: dict) -> str:
    targets = report["targets"]
    title = (
        f"Prepared list of {report['rows'][0]['rows']:,} rows ({report['list_mb']:.0f} MB"
        f"{', 2 % quoted' if report['quoted'] else ''}), min of {report['rows'][0]['repeats']} "
        "fresh processes; "
        f"targets: read ≤ {targets['read_cpu_s']:g} s CPU, parent ≤ "
        f"{targets['retained_mb']:g} MB, worker ≤ {targets['worker_uss_mb']:g} MB"
    )
    return title + "\n\n" + markdown_table(report["rows"], COLUMNS)
