"""Data-loading benchmark: training clips/s of our readers, today's reader and the references.

    generated videos (cached) ─┬─ raw (GOP 250, x264 default tuning)
                               ├─ re-encoded, GOP 8, default tuning (the earlier prepared format)
                               └─ prepared: keyframe interval k (8, 4, 1), tune=fastdecode
    loaders (same sampler, draws and DataLoader; only decoding + transform differ):
      ours rgb          video.decode_clip + transforms.TrainClip: one swscale call per kept frame
                        (crop box → S×S RGB, written into the item)
      ours yuv420       the same decoding, the boxes' YUV planes copied (the device converts;
                        its cost is not in this table, see ``benchmark pipeline``)
      ours decord rgb   decord get_batch (converts every decoded frame) + TrainClip
      today, reference, PyAV kept-only: baselines.py

With ``--workers 0`` (run under ``taskset -c 0``) clips/s are per core and measured in CPU time
of the one process, which a shared machine disturbs much less than wall time. With workers,
wall time. Loaders are run interleaved ``--repeats`` times; the table gives the min–max range.

decord2 (a maintained fork) installs the same ``decord`` module as decord 0.6, so one process
holds one of them: ``pip install --target DIR decord2`` and run with ``PYTHONPATH=DIR:.``,
interleaving such runs with plain ones (benchmarks/RESULTS.md). Spawning workers with DIR on
their path instead halves every reader's measured speed (spawned workers measured slower for
decord 0.6 too), so it is not offered.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from benchmarks.loading.baselines import (
    KeptOnlyClipDataset,
    ReferenceClipDataset,
    TodayClipDataset,
    TodayThreads1ClipDataset,
)
from benchmarks.report import BenchmarkResult, finish
from data_prep.codec import write_video
from data_prep.lists import VideoRecord
from videoglore.data.dataset import VideoClipDataset
from videoglore.data.loader import seed_worker

HELP = "training-clip loading speed: ours vs today's reader vs the reference loaders' decoding"
log = logging.getLogger(__name__)

FULL = dict(videos=16, width=340, height=256, seconds=10.0, clips=96, crop=224, scale=(256, 320))
QUICK = dict(videos=3, width=128, height=96, seconds=3.0, clips=12, crop=64, scale=(96, 112))

TODAY, OURS, REFERENCE = "today (pyav)", "ours rgb", "reference (read_video)"
LOADERS = {
    TODAY: (TodayClipDataset, {}),
    "today + threads=1": (TodayThreads1ClipDataset, {}),
    OURS: (VideoClipDataset, {"reader": "pyav"}),
    "ours yuv420": (VideoClipDataset, {"reader": "pyav", "output": "yuv420"}),
    "ours decord rgb": (VideoClipDataset, {"reader": "decord"}),
    REFERENCE: (ReferenceClipDataset, {}),
    "PyAV kept-only": (KeptOnlyClipDataset, {}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--clips", type=int, help="clips to load per measurement (default 96)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=int, help="generated videos (default 16, 340x256, 10 s)")
    parser.add_argument("--num-frames", type=int, default=8, help="T (default 8)")
    parser.add_argument("--frame-interval", type=int, default=8, help="tau (default 8)")
    parser.add_argument("--raw-gop", type=int, default=250, help="keyframe interval of raw videos")
    parser.add_argument(
        "--keyframe-intervals",
        type=int,
        nargs="+",
        default=[8, 4, 1],
        help="keyframe intervals of the prepared (fastdecode) videos (default 8 4 1)",
    )
    parser.add_argument("--no-raw", action="store_true", help="prepared videos only")
    parser.add_argument("--loaders", nargs="+", choices=list(LOADERS), help="default: all of them")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument(
        "--cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "videoglore", "bench_data"),
        help="folder for the generated videos (written once)",
    )
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")
    parser.add_argument("--quick", action="store_true", help="tiny videos, few clips (< 30 s)")


def run(args: argparse.Namespace) -> BenchmarkResult:
    setup = dict(QUICK if args.quick else FULL)
    for key in ("videos", "clips"):
        if getattr(args, key):
            setup[key] = getattr(args, key)
    workers = 0 if args.quick and args.workers == 2 else args.workers
    T, tau = args.num_frames, args.frame_interval
    names = list(args.loaders or LOADERS)
    rows, ceiling = [], None
    for name, gop, tune in video_kinds(args):
        records = generate_videos(Path(args.cache), setup, gop, tune)
        datasets = {}
        for loader in names:
            cls, kw = LOADERS[loader]
            datasets[loader] = cls(
                records, "train", T, tau, setup["crop"], setup["scale"], seed=0, **kw
            )
        results: dict[str, list[float]] = {loader: [] for loader in datasets}
        for _ in range(args.repeats):  # interleaved: load drifts hit every loader alike
            for loader, dataset in datasets.items():
                speed = measure_loader(dataset, setup["clips"], workers, args.batch_size)
                results[loader].append(speed)
        size = sum(Path(r.path).stat().st_size for r in records) / len(records)
        rows.append(
            dict(video=name, keyframe_interval=gop, mb_per_video=size / 1e6, clips_per_s=results)
        )
        if ceiling is None:
            ceiling = decode_ceiling(records) / T
    report = dict(
        setup=dict(
            setup, workers=workers, T=T, tau=tau, batch_size=args.batch_size, repeats=args.repeats
        ),
        loaders=names,
        timing="CPU time, one process" if workers == 0 else "wall time",
        rows=rows,
        ceiling_clips_per_s_per_core=ceiling,
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    return finish(report, format_table(report), args.out)


def video_kinds(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    """(row name, keyframe interval, x264 tuning) of each generated video set."""
    kinds = (
        []
        if args.no_raw
        else [
            (f"raw (GOP {args.raw_gop})", args.raw_gop, "none"),
            ("re-encoded (GOP 8, default tuning)", 8, "none"),
        ]
    )
    for k in args.keyframe_intervals:
        kinds.append((f"prepared, keyframe interval {k}", k, "fastdecode"))
    return kinds


def measure_loader(dataset: VideoClipDataset, clips: int, workers: int, batch_size: int) -> float:
    """Clips/s over ``clips`` training clips, after one batch per worker (start-up excluded).

    Without workers, all decoding happens in this process: CPU time (clips/s per core).
    """
    n = len(dataset)
    warmup = max(1, workers)
    keys = [(i % n, i // n) for i in range(clips + warmup * batch_size)]
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=keys,
        num_workers=workers,
        worker_init_fn=seed_worker if workers else None,
    )
    clock = time.process_time if workers == 0 else time.perf_counter
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start, loaded = clock(), 0
    for batch in iterator:
        loaded += len(batch[1])
    return loaded / (clock() - start)


def decode_ceiling(records: list[VideoRecord]) -> float:
    """Sequential full-decode speed (frames/s, RGB, one thread) over the videos."""
    _decode_all(records[0].path)  # warm-up: library loading is not decoding
    frames, start = 0, time.perf_counter()
    for record in records:
        frames += _decode_all(record.path)
    return frames / (time.perf_counter() - start)


def _decode_all(path: str) -> int:
    import av

    frames = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24", threads=1)
            frames += 1
    return frames


def generate_videos(cache: Path, setup: dict, gop: int, tune: str) -> list[VideoRecord]:
    """Write (once) ``videos`` clips with moving content; returns their records.

    ``tune``: x264 tuning ("none" or "" = default, "fastdecode" = prepared videos).
    """
    width, height, fps = setup["width"], setup["height"], 25.0
    num_frames = round(setup["seconds"] * fps)
    folder = cache / f"{width}x{height}_{num_frames}f_gop{gop}_{tune or 'none'}"
    records = []
    for i in range(setup["videos"]):
        path = folder / f"video_{i:03d}.mp4"
        if not path.is_file():
            log.info("writing %s", path)
            frames = moving_frames(num_frames, height, width, seed=i)
            # written as prepare writes (reproducible=False: x264's macroblock tree on)
            write_video(
                path, frames, fps, gop, tune="" if tune == "none" else tune, reproducible=False
            )
        records.append(
            VideoRecord(str(path), i % 4, f"class_{i % 4}", num_frames, fps, width, height)
        )
    return records


def moving_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (N, H, W, 3): a drifting textured background and moving squares (motion + detail)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8))  # blocky, compressible detail
    big = np.concatenate([texture, texture], axis=1)
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    squares = rng.uniform(0, 1, (4, 4))  # x, y, vx, vy
    side = max(8, height // 6)
    for t in range(num_frames):
        shift = (2 * t) % texture.shape[1]
        out[t] = big[:height, shift : shift + width] // 2
        for x, y, vx, vy in squares:
            cx = int((x + (vx - 0.5) * t / 50) % 1 * (width - side))
            cy = int((y + (vy - 0.5) * t / 50) % 1 * (height - side))
            out[t, cy : cy + side, cx : cx + side] = (255, 200, 40)
    return out


def format_table(report: dict) -> str:
    setup, names = report["setup"], report["loaders"]
    clip = f"clips {setup['T']}x{setup['tau']}, crop {setup['crop']}, scale {list(setup['scale'])}"
    machine = f"{report['cpu_count']} CPUs, load average {report['load_average'][0]:.1f}"
    ratios = [(a, b) for a, b in ((OURS, TODAY), (OURS, REFERENCE)) if a in names and b in names]
    lines = [
        f"Data loading: {setup['videos']} videos {setup['width']}x{setup['height']}, "
        f"{setup['seconds']:g} s at 25 fps; {clip}; {setup['workers']} workers "
        f"({report['timing']}); clips/s, min-max of {setup['repeats']} interleaved runs; "
        f"{machine}",
        "",
        "| video | MB/video | " + " | ".join(names + [f"{a} / {b}" for a, b in ratios]) + " |",
        "|---|" + "---:|" * (len(names) + len(ratios) + 1),
    ]
    for row in report["rows"]:
        speeds = row["clips_per_s"]
        cells = [f"{min(speeds[n]):.1f}-{max(speeds[n]):.1f}" for n in names]
        for a, b in ratios:
            ours, base = speeds[a], speeds[b]
            cells.append(
                f"{min(ours) / max(base):.2f}-{max(ours) / min(base):.2f}x "
                f"(medians {np.median(ours) / np.median(base):.2f}x)"
            )
        lines.append(f"| {row['video']} | {row['mb_per_video']:.2f} | " + " | ".join(cells) + " |")
    lines.append(
        f"| decode ceiling (1 process, full decode of the first set ÷ {setup['T']} frames) | | "
        f"{report['ceiling_clips_per_s_per_core']:.1f} |" + " |" * (len(names) + len(ratios) - 1)
    )
    return "\n".join(lines)
