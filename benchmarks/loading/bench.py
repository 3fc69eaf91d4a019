"""Data-loading benchmark: training clips/s of our readers against the reference loaders' decoding.

    generated videos (cached) ─┬─ raw (GOP 250, x264 default tuning)
                               ├─ re-encoded, GOP 8, default tuning (the earlier prepared format)
                               └─ re-encoded, GOP 8, tune=fastdecode (prepared format now)
    loaders (same sampler, transforms, DataLoader; only the frame reader differs):
      ours (pyav)     video.read_clip: decode from the keyframe before each needed frame,
                      convert only the needed frames to RGB
      ours (decord)   decord get_batch (converts every decoded frame)
      reference       torchvision ``read_video(start, end)`` / PySlowFast ``pyav_decode``: seek to
                      the keyframe before the clip start, decode to the clip end, convert EVERY
                      frame of the span to RGB, then keep T of them
      PyAV kept-only  the reference with conversion of the T kept frames only (stronger baseline)

With ``--workers 0`` (run under ``taskset -c 0``) clips/s are per core and measured in CPU time
of the one process, which a shared machine disturbs much less than wall time. Loaders are run
interleaved ``--repeats`` times; the table gives the min–max range.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from benchmarks.report import BenchmarkResult, finish
from data_prep.codec import write_video
from data_prep.lists import VideoRecord
from videoglore.data.dataset import VideoClipDataset
from videoglore.data.loader import seed_worker

HELP = "training-clip loading speed: ours (PyAV/decord) vs the reference loaders' decoding"
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
    videos = (
        (f"raw (GOP {args.raw_gop})", args.raw_gop, ""),
        (f"re-encoded (GOP {args.gop})", args.gop, "none"),
        (f"re-encoded (GOP {args.gop}, fastdecode) = prepared", args.gop, "fastdecode"),
    )
    rows, ceiling = [], None
    for name, gop, tune in videos:
        records = generate_videos(Path(args.cache), setup, gop, tune)
        datasets = {
            name: cls(records, "train", T, tau, setup["crop"], setup["scale"], seed=0, **kw)
            for name, cls, kw in LOADERS
        }
        results = {name: [] for name in datasets}
        for _ in range(args.repeats):  # interleaved: load drifts hit every loader alike
            for loader_name, dataset in datasets.items():
                speed = measure_loader(dataset, setup["clips"], workers, args.batch_size)
                results[loader_name].append(speed)
        rows.append(dict(video=name, clips_per_s=results))
        if ceiling is None:
            ceiling = decode_ceiling(records) / T
    report = dict(
        setup=dict(
            setup, workers=workers, T=T, tau=tau, batch_size=args.batch_size, repeats=args.repeats
        ),
        timing="CPU time, one process" if workers == 0 else "wall time",
        rows=rows,
        ceiling_clips_per_s_per_core=ceiling,
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg(),
    )
    return finish(report, format_table(report), args.out)


class ReferenceClipDataset(VideoClipDataset):
    """Frames read as torchvision ``read_video(start, end)`` and PySlowFast's ``pyav_decode`` do.

    Both seek (backward) to the keyframe before the clip's start time, decode forward until the
    clip's end time and turn every decoded frame of the span into an RGB array
    (``frame.to_rgb().to_ndarray()``); the clip's T frames are picked afterwards. The released
    GloRe code (OpenCV ``VideoIter``) likewise converts every frame it reads.
    """

    convert_all = True

    def read_clip_frames(self, record: VideoRecord, indices_for) -> np.ndarray:
        import av

        indices = np.asarray(indices_for(record.num_frames), dtype=np.int64).reshape(-1)
        first, last = int(indices.min()), int(indices.max())
        wanted = set(indices.tolist())
        span: dict[int, np.ndarray] = {}
        with av.open(record.path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per worker, as our readers
            rate = float(stream.average_rate)
            container.seek(int(first / rate / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                position = round(float(frame.pts * stream.time_base) * rate)
                if position >= first and (self.convert_all or position in wanted):
                    span[position] = frame.to_ndarray(format="rgb24")
                if position >= last:
                    break
        return np.stack([span[i] for i in indices.tolist()])


class KeptOnlyClipDataset(ReferenceClipDataset):
    """The reference decoding, converting only the T kept frames (a stronger baseline)."""

    convert_all = False


LOADERS = (
    ("ours (pyav)", VideoClipDataset, {"reader": "pyav"}),
    ("ours (decord)", VideoClipDataset, {"reader": "decord"}),
    ("reference (read_video)", ReferenceClipDataset, {}),
    ("PyAV kept-only", KeptOnlyClipDataset, {}),
)


def measure_loader(dataset: VideoClipDataset, clips: int, workers: int, batch_size: int) -> float:
    """Clips/s over ``clips`` training clips, after the first batch (worker start-up excluded).

    Without workers, all decoding happens in this process: CPU time (clips/s per core).
    """
    n = len(dataset)
    keys = [(i % n, i // n) for i in range(clips + batch_size)]
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=keys,
        num_workers=workers,
        worker_init_fn=seed_worker if workers else None,
    )
    clock = time.process_time if workers == 0 else time.perf_counter
    iterator = iter(loader)
    next(iterator)
    start, loaded = clock(), 0
    for clip, _, _ in iterator:
        loaded += clip.shape[0]
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
            frame.to_ndarray(format="rgb24")
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
            write_video(path, frames, fps, gop, tune="" if tune == "none" else tune)
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
    names = [name for name, _, _ in LOADERS]
    lines = [
        f"Data loading: {setup['videos']} videos {setup['width']}x{setup['height']}, "
        f"{setup['seconds']:g} s at 25 fps; {clip}; {setup['workers']} workers "
        f"({report['timing']}); min-max of {setup['repeats']} interleaved runs; {machine}",
        "",
        "| video | " + " | ".join(f"{n} clips/s" for n in names) + " | ours / reference |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for row in report["rows"]:
        speeds = row["clips_per_s"]
        cells = [f"{min(speeds[n]):.1f}-{max(speeds[n]):.1f}" for n in names]
        ours, ref = speeds[names[0]], speeds[names[2]]
        ratio = f"{min(ours) / max(ref):.2f}-{max(ours) / min(ref):.2f}x"
        ratio += f" (medians {np.median(ours) / np.median(ref):.2f}x)"
        lines.append(f"| {row['video']} | " + " | ".join(cells) + f" | {ratio} |")
    lines.append(
        f"| decode ceiling (1 process, full decode of raw ÷ {setup['T']} frames) | "
        f"{report['ceiling_clips_per_s_per_core']:.1f} |" + " |" * len(names)
    )
    return "\n".join(lines)
