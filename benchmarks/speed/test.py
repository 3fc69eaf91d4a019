"""Testing speed: videos/s of multi-view testing (10 clips × 3 crops by default), forward only.

    synthetic uint8 views (B, K*C, 3, T, S, S) on the device
      ─▶ engine.scoring.score_videos (flatten to (B*V, ...), chunks of test.max_views_per_forward
         views across videos, normalize, autocast, softmax averaged per video)

The tester's own scoring function runs on a fixed synthetic batch in place of the data loader, so
the measurement covers exactly what ``run.py test`` does per batch once the frames are decoded.
MFU counts forward FLOPs only: 2 × fvcore MACs per view × views/s ÷ the bf16 dense peak.
"""

from __future__ import annotations

import argparse
import logging

import torch

from benchmarks.report import BenchmarkResult
from benchmarks.speed import common as speed
from videoglore.config import Config
from videoglore.engine.forward import FastPath
from videoglore.engine.scoring import score_videos

HELP = "multi-view testing speed per model: videos/s (10x3 views), peak memory, MFU"
log = logging.getLogger(__name__)

COLUMNS = [
    ("model", "model", ""),
    ("clip", "clip", ""),
    ("videos/batch", "batch", ""),
    ("precision", "precision", ""),
    ("channels_last", "channels_last", ""),
    ("compile", "compile", ""),
    ("videos/s", "videos_per_s", ".2f"),
    ("views/s", "views_per_s", ".1f"),
    ("batch time (ms)", "step_ms", ".1f"),
    ("peak mem (GiB)", "peak_mem_gib", ".2f"),
    ("GMACs/view", "gmacs_per_clip", ".3g"),
    ("MFU", "mfu", ".1%"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Config().test
    speed.add_common_arguments(parser, "videos per batch (default 4 on CUDA, 1 on CPU)")
    parser.add_argument("--num-clips", type=int, default=defaults.num_clips, help="K (default 10)")
    parser.add_argument("--num-crops", type=int, default=defaults.num_crops, help="C (default 3)")
    parser.add_argument(
        "--max-views-per-forward",
        type=int,
        default=defaults.max_views_per_forward,
        help=f"views per forward, across videos (default {defaults.max_views_per_forward})",
    )


def run(args: argparse.Namespace) -> BenchmarkResult:
    setup = {
        "num_clips": args.num_clips,
        "num_crops": args.num_crops,
        "max_views_per_forward": args.max_views_per_forward,
        "num_classes": args.num_classes,
    }
    cuda_batch = Config().test.batch_size
    return speed.run_benchmark(args, "test", measure_testing, (cuda_batch, 1), setup, format_report)


def measure_testing(
    name: str,
    variant: speed.Variant,
    clip: tuple[int, int, int],
    args: argparse.Namespace,
    device: torch.device,
    peak: float | None,
    flops_cache: dict,
) -> dict:
    """One row: time of scoring one batch of ``args.batch`` videos with all their views."""
    dtype, model, net, counts = speed.setup_variant(name, variant, clip, args, device, flops_cache)
    cfg = Config()
    cfg.test.num_clips, cfg.test.num_crops = args.num_clips, args.num_crops
    cfg.test.max_views_per_forward = args.max_views_per_forward
    views_per_video = args.num_clips * args.num_crops
    views = torch.randint(
        0, 256, (args.batch, views_per_video, 3, *clip), dtype=torch.uint8, device=device
    )  # (B, V, 3, T, S, S)
    labels = torch.arange(args.batch) % model.num_classes
    batch = [(views, labels, torch.arange(args.batch), [])]  # what collate_test yields

    fast = FastPath(dtype=dtype, channels_last=variant.channels_last, compile=False)

    def step() -> None:
        score_videos(net, batch, cfg, device, fast)

    timing = speed.time_steps(step, args.warmup, args.steps, device)
    videos_per_s = args.batch / (timing["step_ms"] / 1000.0)
    views_per_s = videos_per_s * views_per_video
    return {
        "videos_per_s": videos_per_s,
        "views_per_s": views_per_s,
        **timing,
        "gmacs_per_clip": counts["gmacs_per_clip"],
        "mfu": speed.mfu(counts["gmacs_per_clip"] * 1e9, views_per_s, peak, train=False),
    }


def format_report(report: dict) -> str:
    dev, setup = report["device"], report["setup"]
    return speed.format_report(
        report,
        COLUMNS,
        f"Testing speed on {dev['name']} (torch {dev['torch']}): synthetic videos of "
        f"{setup['num_clips']}×{setup['num_crops']} views, up to {setup['max_views_per_forward']} "
        f"views per forward, width {setup['width']:g}, {setup['warmup']} warm-up + "
        f"{setup['steps']} timed batches",
        mfu_formula="2 × fvcore MACs × views/s",
    )
