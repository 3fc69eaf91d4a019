"""Prepare throughput: videos/s per core and GB per 1,000 prepared videos, Kinetics-like sources.

    sources.py: 10 s, 640x360 and 1280x720, 30 fps, H.264 (x264 defaults: B-frames, scene
    cuts) + AAC, written once into a cache
      └─ data_prep.prepare.prepare(--folder, --keyframe-interval k, workers=1): the real command
           plan → probe (PyAV) → decode, scale, encode (libx264) → verify (decord) → lists

Everything runs in this one process (``workers=1``), so its CPU time is the work of one core:
videos/s per core = videos / CPU seconds, which a shared machine disturbs far less than wall
time. A pool of N workers does N times that while the cores are not shared and the disk keeps
up. The stages (probe, transcode, verify, the rest) are timed by wrapping ``data_prep.encode``'s
calls. Every output file's SHA-256 is reported: two runs of different code that write the same
bytes have the same ``outputs`` digest. The table projects the hours for Kinetics-400 (~300k
videos) and -700 (~650k) on 16 and 64 cores (and on N machines with ``--shard``: divide by N).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import data_prep.encode as encode
from benchmarks.prepare.sources import source_folder, source_path, write_source
from benchmarks.report import BenchmarkResult, finish
from data_prep.prepare import PrepareOptions, prepare

HELP = "prepare throughput on Kinetics-like sources: videos/s per core, GB per 1,000 videos"

FULL = dict(videos=4, seconds=10.0, sizes=["640x360", "1280x720"])
QUICK = dict(videos=1, seconds=1.0, sizes=["128x72", "256x144"])
DATASETS = {"Kinetics-400": 300_000, "Kinetics-700": 650_000}
CORES = (16, 64)
STAGES = {"probe": "probe_video", "transcode": "transcode_video", "verify": "decord_frame_count"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=int, help="sources per size (default 4)")
    parser.add_argument("--seconds", type=float, help="source length (default 10)")
    parser.add_argument("--sizes", nargs="+", metavar="WxH", help="default 640x360 1280x720")
    parser.add_argument(
        "--keyframe-intervals", type=int, nargs="+", default=[1, 8], help="default 1 8"
    )
    parser.add_argument("--short-side", type=int, default=256, help="prepare's (default 256)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting (median)")
    parser.add_argument(
        "--cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "videoglore", "bench_prepare"),
        help="folder for the generated sources (written once)",
    )
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")
    parser.add_argument("--quick", action="store_true", help="tiny 1 s sources (CPU smoke test)")


def run(args: argparse.Namespace) -> BenchmarkResult:
    setup = dict(QUICK if args.quick else FULL)
    for key in ("videos", "seconds", "sizes"):
        if getattr(args, key):
            setup[key] = getattr(args, key)
    rows = []
    for size in setup["sizes"]:
        width, height = (int(v) for v in size.split("x"))
        folder = write_sources(Path(args.cache), width, height, setup["seconds"], setup["videos"])
        for k in args.keyframe_intervals:
            runs = [measure(folder, k, args.short_side) for _ in range(args.repeats)]
            rows.append(summarise(size, k, runs))
    report = dict(
        setup=dict(setup, short_side=args.short_side, repeats=args.repeats),
        rows=rows,
        timing="CPU time of one process (workers=1): per core",
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    return finish(report, format_table(report), args.out)


def write_sources(cache: Path, width: int, height: int, seconds: float, videos: int) -> Path:
    for i in range(videos):
        write_source(source_path(cache, width, height, seconds, i), width, height, seconds, i)
    return source_folder(cache, width, height, seconds)


def measure(folder: Path, keyframe_interval: int, short_side: int) -> dict:
    """One prepare run over ``folder`` into a fresh output folder: CPU and wall seconds, the
    stages' CPU seconds, the outputs' sizes and hashes."""
    out = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        options = PrepareOptions(
            str(out),
            folders={"train": str(folder)},
            keyframe_interval=keyframe_interval,
            short_side=short_side,
            workers=1,
        )
        with timed_stages() as stages:
            cpu, wall = time.process_time(), time.perf_counter()
            summary = prepare(options)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        outputs = sorted((out / "videos").rglob("*.mp4"))
        if summary.splits["train"].kept != len(outputs) or not outputs:
            raise RuntimeError(f"prepare kept {summary.splits['train'].kept} of the sources")
        return dict(
            videos=len(outputs),
            cpu_s=cpu,
            wall_s=wall,
            stages_cpu_s=stages,
            output_bytes=[p.stat().st_size for p in outputs],
            output_sha256=[hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs],
            source_bytes=sum(p.stat().st_size for p in folder.rglob("*.mp4")),
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


@contextlib.contextmanager
def timed_stages():
    """CPU seconds spent in each of ``data_prep.encode``'s stage calls while the block runs."""
    spent = dict.fromkeys(STAGES, 0.0)
    originals = {stage: getattr(encode, name) for stage, name in STAGES.items()}

    def timed(stage, call):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start

        return wrapper

    for stage, name in STAGES.items():
        setattr(encode, name, timed(stage, originals[stage]))
    try:
        yield spent
    finally:
        for stage, name in STAGES.items():
            setattr(encode, name, originals[stage])


def summarise(size: str, keyframe_interval: int, runs: list[dict]) -> dict:
    """One table row: medians over the runs; the hash digest of the outputs (same in every run
    for the same code: x264 runs single-threaded)."""
    first, videos = runs[0], runs[0]["videos"]
    cpu = statistics.median(r["cpu_s"] for r in runs) / videos
    mean_bytes = sum(first["output_bytes"]) / videos
    digest = hashlib.sha256("".join(first["output_sha256"]).encode()).hexdigest()[:12]
    stages = {s: statistics.median(r["stages_cpu_s"][s] for r in runs) / videos for s in STAGES}
    stages["rest"] = max(0.0, cpu - sum(stages.values()))
    hours = {
        f"{name} on {cores} cores": count * cpu / cores / 3600
        for name, count in DATASETS.items()
        for cores in CORES
    }
    return dict(
        size=size,
        keyframe_interval=keyframe_interval,
        videos=videos,
        cpu_s_per_video=cpu,
        videos_per_s_per_core=1 / cpu,
        wall_s_per_video=statistics.median(r["wall_s"] for r in runs) / videos,
        stages_cpu_s_per_video=stages,
        source_mb_per_video=first["source_bytes"] / videos / 1e6,
        output_mb_per_video=mean_bytes / 1e6,
        gb_per_1000_videos=mean_bytes * 1000 / 1e9,
        outputs_digest=digest,
        output_sha256=first["output_sha256"],
        cpu_s_runs=[r["cpu_s"] for r in runs],
        hours=hours,
    )


def format_table(report: dict) -> str:
    setup = report["setup"]
    machine = f"{report['cpu_count']} CPUs, load average {report['load_average'][0]:.1f}"
    lines = [
        f"Prepare: {setup['videos']} Kinetics-like sources per size, {setup['seconds']:g} s at "
        f"30 fps, short side {setup['short_side']}; {report['timing']}; median of "
        f"{setup['repeats']} run(s); {machine}",
        "",
        "| source | keyframe interval | videos/s per core | CPU s/video (probe / transcode / "
        "verify / rest) | source MB | output MB | GB per 1,000 videos | outputs digest |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        stages = " / ".join(f"{v:.3f}" for v in row["stages_cpu_s_per_video"].values())
        lines.append(
            f"| {row['size']} | {row['keyframe_interval']} | {row['videos_per_s_per_core']:.2f} "
            f"| {row['cpu_s_per_video']:.2f} ({stages}) | {row['source_mb_per_video']:.2f} | "
            f"{row['output_mb_per_video']:.2f} | {row['gb_per_1000_videos']:.2f} | "
            f"{row['outputs_digest']} |"
        )
    names = list(report["rows"][0]["hours"]) if report["rows"] else []
    lines += [
        "",
        "Projected hours, one worker per core, cores not shared, the disk keeping up "
        "(N machines with --shard: divide by N):",
        "",
        "| source | keyframe interval | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for row in report["rows"]:
        cells = " | ".join(f"{row['hours'][n]:.1f}" for n in names)
        lines.append(f"| {row['size']} | {row['keyframe_interval']} | {cells} |")
    return "\n".join(lines)
