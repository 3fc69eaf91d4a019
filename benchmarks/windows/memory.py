"""Peak memory of ``predict --window`` on long videos: it must not grow with the video.

    python -m benchmarks.windows.memory --out /tmp/windows_bench --minutes 1 10

Writes 340×256 videos of each length at 25 fps (the loading benchmark's moving content, in 10-s
pieces, encoded as ``prepare`` encodes), a checkpoint of R50+GloRe (random weights, ``--width``)
with the Kinetics test settings (8×8 clips, 10 clips × 3 crops, short side 256, 224² crops), then
runs ``run.py predict VIDEO --window 4 --stride 2`` in a fresh process per video, and plain
``run.py predict`` on a 10-s video (the same 30 views, scored once) for the fixed costs. Prints
each process's peak resident memory (``ru_maxrss``) and CPU time. Every process runs one torch
thread; the numbers depend on the machine's other load only through time, never memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import torch

from benchmarks.loading.bench import moving_frames
from data_prep.codec import add_h264_stream
from data_prep.files import atomic_open
from videoglore.config import config_from_dict, config_to_dict
from videoglore.engine.checkpoint import save_checkpoint
from videoglore.models import build_model

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, FPS, PIECE = 340, 256, 25, 250  # a piece: 10 s of frames, generated at once


def write_long_video(path: Path, seconds: int, keyframe_interval: int) -> Path:
    """``seconds`` of 340×256 video, written piece by piece (never all frames in memory)."""
    import av

    if path.is_file():
        return path
    rate = Fraction(FPS)
    with atomic_open(path, "wb") as f, av.open(f, mode="w", format="mp4") as container:
        stream = add_h264_stream(container, rate, WIDTH, HEIGHT, keyframe_interval, crf=23)
        for piece in range(seconds * FPS // PIECE):
            for frame in moving_frames(PIECE, HEIGHT, WIDTH, seed=piece):
                image = av.VideoFrame.from_ndarray(frame, format="rgb24")
                container.mux(stream.encode(image))
        container.mux(stream.encode())
    return path


def write_checkpoint(path: Path, width: float) -> Path:
    """R50+GloRe at ``width``, random weights, the Kinetics-400 test settings (the config's
    defaults: 8×8 clips, 10 × 3 views, short side 256, 224² crops)."""
    cfg = config_from_dict({"model": {"width": width, "num_classes": 400}})
    torch.manual_seed(0)
    state = {"model": build_model(cfg.model).state_dict(), "config": config_to_dict(cfg)}
    state["classes"] = [f"class_{i}" for i in range(400)]
    return save_checkpoint(state, path)


def measure(argv: list[str]) -> tuple[float, float]:
    """(peak resident MiB, CPU seconds) of ``run.py *argv`` in a fresh one-thread process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "run.py"), *argv]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/windows_bench"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--width", type=float, default=0.0625, help="R50+GloRe channel width")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--keyframe-interval", type=int, default=8)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = write_checkpoint(args.out / f"r50_glore_w{args.width:g}.pt", args.width)
    short = write_long_video(args.out / "10s.mp4", 10, args.keyframe_interval)
    common = ["--checkpoint", str(checkpoint), "--device", "cpu", "--topk", "5"]
    rows = [("plain predict, 10 s", *measure(["predict", str(short), *common]))]
    for minutes in args.minutes:
        seconds = round(minutes * 60)
        path = write_long_video(args.out / f"{seconds}s.mp4", seconds, args.keyframe_interval)
        windows = ["--window", str(args.window), "--stride", str(args.stride)]
        out = ["--out", str(args.out / f"{seconds}s.csv")]
        name = f"--window {args.window:g} --stride {args.stride:g}, {seconds} s"
        rows.append((name, *measure(["predict", str(path), *common, *windows, *out])))
    print(f"R50+GloRe width {args.width:g}, 10 x 3 views of 8x8 at 224^2, {WIDTH}x{HEIGHT}")
    print(f"{'run':<40} {'peak RSS MiB':>12} {'CPU s':>8}")
    for name, rss, cpu in rows:
        print(f"{name:<40} {rss:>12.0f} {cpu:>8.1f}")


if __name__ == "__main__":
    main()
