"""Data-loading benchmark: training clips/s of our loader against a PyAV seek-and-decode baseline.

    generated videos (cached) ── raw (long GOP) ──┬── ours: decord, fresh reader per clip
                              └─ re-encoded (GOP 8)┘   baseline: PyAV seek + decode forward
                                                        (same sampler, transforms, workers)
    decode ceiling = sequential full-decode frames/s ÷ frames per clip (one process)

Both loaders run the same ``VideoClipDataset`` (same clips, same crops, same DataLoader and
worker count); only the frame reader differs. The baseline is the reference loaders' approach
(torchvision ``read_video``, the released code's ``VideoIter``): seek to the keyframe before the
clip's start time, decode forward to the last needed frame, converting only the needed frames to
RGB (a slightly stronger baseline than ``read_video``, which converts every frame in range).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from videoglore.data.dataset import VideoClipDataset
from videoglore.data.lists import VideoRecord
from videoglore.data.loader import seed_worker
from videoglore.data.video import write_video

HELP = "training-clip loading speed: ours (decord) vs a PyAV seek+decode baseline"
log = logging.getLogger(__name__)

FULL = dict(videos=16, width=340, height=256, seconds=10.0, clips=96, crop=224, scale=(256, 320))
QUICK = dict(videos=3, width=128, height=96, seconds=3.0, clips=12, crop=64, scale=(96, 112))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--clips", type=int, help="clips to load per measurement (default 96)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--videos", type=int, help="generated videos (default 16, 340x256, 10 s)")
    parser.add_argument("--num-frames", type=int, default=8, help="T (default 8)")
    parser.add_argument("--frame-interval", type=int, default=8, help="tau (default 8)")
    parser.add_argument("--raw-gop", type=int, default=250, help="keyframe interval of raw videos")
    parser.add_argument("--gop", type=int, default=8, help="keyframe interval after re-encoding")
    parser.add_argument(
        "--cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "videoglore", "bench_data"),
        help="folder for the generated videos (written once)",
    )
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")
    parser.add_argument("--quick", action="store_true", help="tiny videos, few clips (< 30 s)")


def run(args: argparse.Namespace) -> int:
    setup = dict(QUICK if args.quick else FULL)
    for key in ("videos", "clips"):
        if getattr(args, key):
            setup[key] = getattr(args, key)
    workers = 0 if args.quick and args.workers == 2 else args.workers
    T, tau = args.num_frames, args.frame_interval
    rows, ceiling = [], None
    for name, gop in (("raw", args.raw_gop), ("re-encoded", args.gop)):
        records = generate_videos(Path(args.cache), setup, gop)
        results = {}
        for loader_name, cls in (
            ("ours (decord)", VideoClipDataset),
            ("baseline (PyAV)", PyAVClipDataset),
        ):
            dataset = cls(records, "train", T, tau, setup["crop"], setup["scale"], seed=0)
            results[loader_name] = measure_loader(dataset, setup["clips"], workers, args.batch_size)
        ours, base = results["ours (decord)"], results["baseline (PyAV)"]
        rows.append(dict(video=f"{name} (GOP {gop})", ours=ours, baseline=base, ratio=ours / base))
        if name == "raw":
            ceiling = decode_ceiling(records) / T
    report = dict(
        setup=dict(setup, workers=workers, T=T, tau=tau, batch_size=args.batch_size),
        rows=rows,
        ceiling_clips_per_s_per_core=ceiling,
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    table = format_table(report)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        out.with_suffix(".md").write_text(table + "\n")
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


class PyAVClipDataset(VideoClipDataset):
    """Same dataset, frames read the reference way: PyAV seek to the clip start + decode forward."""

    def read_clip_frames(self, record: VideoRecord, indices_for) -> np.ndarray:
        import av

        indices = np.asarray(indices_for(record.num_frames), dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        wanted, last = set(unique.tolist()), int(unique[-1])
        found: dict[int, np.ndarray] = {}
        with av.open(record.path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per worker, as decord's reader
            rate = float(stream.average_rate)
            seek_pts = int(unique[0] / rate / stream.time_base)
            container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                position = round(float(frame.pts * stream.time_base) * rate)
                if position in wanted:
                    found[position] = frame.to_ndarray(format="rgb24")
                if position >= last:
                    break
        frames = np.stack([found[i] for i in unique.tolist()])
        return frames[inverse.reshape(-1)]


def measure_loader(dataset: VideoClipDataset, clips: int, workers: int, batch_size: int) -> float:
    """Clips/s over ``clips`` training clips, after the first batch (worker start-up excluded)."""
    n = len(dataset)
    keys = [(i % n, i // n) for i in range(clips + batch_size)]
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=keys,
        num_workers=workers,
        worker_init_fn=seed_worker if workers else None,
    )
    iterator = iter(loader)
    next(iterator)
    start, loaded = time.perf_counter(), 0
    for clip, _, _ in iterator:
        loaded += clip.shape[0]
    return loaded / (time.perf_counter() - start)


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
            frame.to_ndarray(format="rgb24")
            frames += 1
    return frames


def generate_videos(cache: Path, setup: dict, gop: int) -> list[VideoRecord]:
    """Write (once) ``videos`` clips with moving content; returns their records."""
    width, height, fps = setup["width"], setup["height"], 25.0
    num_frames = round(setup["seconds"] * fps)
    folder = cache / f"{width}x{height}_{num_frames}f_gop{gop}"
    records = []
    for i in range(setup["videos"]):
        path = folder / f"video_{i:03d}.mp4"
        if not path.is_file():
            log.info("writing %s", path)
            write_video(path, moving_frames(num_frames, height, width, seed=i), fps, gop)
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
    setup = report["setup"]
    clip = f"clips {setup['T']}x{setup['tau']}, crop {setup['crop']}, scale {list(setup['scale'])}"
    machine = f"{report['cpu_count']} CPUs, load average {report['load_average'][0]:.1f}"
    lines = [
        f"Data loading: {setup['videos']} videos {setup['width']}x{setup['height']}, "
        f"{setup['seconds']:g} s at 25 fps; {clip}; {setup['workers']} workers; "
        f"{machine} (shared machine)",
        "",
        "| video | ours (decord) clips/s | baseline (PyAV) clips/s | ours / baseline |",
        "|---|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['video']} | {row['ours']:.1f} | {row['baseline']:.1f} | {row['ratio']:.2f}x |"
        )
    lines.append(
        f"| decode ceiling (1 process, full decode ÷ {setup['T']} frames) | "
        f"{report['ceiling_clips_per_s_per_core']:.1f} | | |"
    )
    return "\n".join(lines)
