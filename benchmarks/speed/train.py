"""Training speed: clips/s, step time, peak memory and MFU per model and setting, and GloRe's cost.

    synthetic uint8 clips (B, 3, T, H, W) on the device ─▶ engine.forward.forward_batch
      (normalize, [channels_last_3d], autocast bf16 or fp32/TF32) ─▶ cross-entropy ─▶ backward
      ─▶ SGD step

The step is the trainer's (``engine.trainer.train_step``: the same forward_batch and optimizer)
without data loading and without the per-step loss/accuracy read-back
(``.item()``, two host syncs). Defaults: the released clips (R50/R101 ± GloRe at 8×224², MF-Net
± GloRe at 16×224²).

GloRe's cost: a few extra eager steps run under ``torch.profiler`` with ``record_function`` ranges
around every GloRe unit's forward and backward (module hooks). Its time share (GPU kernel time on
CUDA, CPU time on CPU, of the whole step incl. the optimizer) is reported beside its share of the
model's fvcore MACs; a share of time well above the share of FLOPs means the units run at lower
efficiency than the convolutions (small matrix products, reshapes).
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.report import BenchmarkResult
from benchmarks.speed import common as speed
from videoglore.config import DataConfig, TrainConfig
from videoglore.engine.forward import FastPath, forward_batch
from videoglore.engine.optim import build_optimizer
from videoglore.models import GloRe

HELP = "training speed per model: clips/s, step time, peak memory, MFU, GloRe time vs FLOPs"
log = logging.getLogger(__name__)

COLUMNS = [
    ("model", "model", ""),
    ("clip", "clip", ""),
    ("batch", "batch", ""),
    ("precision", "precision", ""),
    ("channels_last", "channels_last", ""),
    ("compile", "compile", ""),
    ("clips/s", "clips_per_s", ".1f"),
    ("step (ms)", "step_ms", ".1f"),
    ("peak mem (GiB)", "peak_mem_gib", ".2f"),
    ("GMACs/clip", "gmacs_per_clip", ".3g"),
    ("MFU", "mfu", ".1%"),
    ("GloRe time share", "glore_time_share", ".1%"),
    ("GloRe FLOP share", "glore_flop_share", ".1%"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    speed.add_common_arguments(parser, "clips per step (default 16 on CUDA, 2 on CPU)")
    parser.add_argument(
        "--profile-steps", type=int, default=3, help="profiled steps for GloRe's time share (0: no)"
    )


def run(args: argparse.Namespace) -> BenchmarkResult:
    setup = {"profile_steps": args.profile_steps, "num_classes": args.num_classes}
    return speed.run_benchmark(args, "train", measure_training, (16, 2), setup, format_report)


def measure_training(
    name: str,
    variant: speed.Variant,
    clip: tuple[int, int, int],
    args: argparse.Namespace,
    device: torch.device,
    peak: float | None,
    flops_cache: dict,
) -> dict:
    """One row: timing of ``args.steps`` training steps, MFU and GloRe's time and FLOP shares."""
    dtype, model, net, counts = speed.setup_variant(name, variant, clip, args, device, flops_cache)
    step = make_train_step(model, net, args.batch, clip, dtype, variant.channels_last, device)
    timing = speed.time_steps(step, args.warmup, args.steps, device)
    clips_per_s = args.batch / (timing["step_ms"] / 1000.0)
    share = None
    if args.profile_steps > 0 and not variant.compile and counts["glore_flop_share"] is not None:
        share = glore_time_share(model, step, args.profile_steps, device)
    return {
        "clips_per_s": clips_per_s,
        **timing,
        **counts,
        "mfu": speed.mfu(counts["gmacs_per_clip"] * 1e9, clips_per_s, peak, train=True),
        "glore_time_share": share,
    }


def make_train_step(
    model: nn.Module,
    net: nn.Module,
    batch: int,
    clip: tuple[int, int, int],
    dtype: torch.dtype | None,
    channels_last: bool,
    device: torch.device,
):
    """A closure running one training step on a fixed synthetic batch."""
    clips = torch.randint(0, 256, (batch, 3, *clip), dtype=torch.uint8, device=device)
    labels = torch.randint(0, model.num_classes, (batch,), device=device)
    optimizer = build_optimizer(model, TrainConfig(), global_batch=batch)
    data = DataConfig()
    fast = FastPath(dtype=dtype, channels_last=channels_last, compile=False)  # net is compiled
    net.train()

    def step() -> None:
        logits = forward_batch(net, clips, data, device, fast)  # (B, K)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


class _UnitRanges:
    """``record_function`` ranges around one module's forward and backward, opened and closed by
    module hooks (the autograd engine runs a unit's backward nodes contiguously: its input feeds
    nothing else)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.name = name
        self.forward_range = self.backward_range = None
        self.handles = [
            module.register_forward_pre_hook(self._enter_forward),
            module.register_forward_hook(self._exit_forward),
            module.register_full_backward_pre_hook(self._enter_backward),
            module.register_full_backward_hook(self._exit_backward),
        ]

    def _enter_forward(self, module, inputs) -> None:
        self.forward_range = record_function(f"{speed.GLORE_RANGE}{self.name}")
        self.forward_range.__enter__()

    def _exit_forward(self, module, inputs, output) -> None:
        self.forward_range.__exit__(None, None, None)

    def _enter_backward(self, module, grad_output) -> None:
        self.backward_range = record_function(f"{speed.GLORE_RANGE}{self.name}.backward")
        self.backward_range.__enter__()

    def _exit_backward(self, module, grad_input, grad_output) -> None:
        self.backward_range.__exit__(None, None, None)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def glore_time_share(model: nn.Module, step, steps: int, device: torch.device) -> float:
    """Fraction of a training step's time spent inside GloRe units (forward + backward).

    On CUDA: kernel time launched inside the GloRe ranges ÷ all kernel time of the profiled steps.
    On CPU: CPU time inside the ranges ÷ CPU time of the profiled steps.
    """
    ranges = [_UnitRanges(m, n) for n, m in model.named_modules() if isinstance(m, GloRe)]
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with profile(activities=activities) as prof:
            for _ in range(steps):
                with record_function("bench::train_step"):  # Python time between ops counts too
                    step()
            speed.synchronize(device)
    finally:
        for r in ranges:
            r.remove()
    events = [e for e in prof.events() if e.device_type == DeviceType.CPU]
    glore_events = [e for e in events if e.name.startswith(speed.GLORE_RANGE)]
    if cuda:  # kernels are attributed to the CPU op that launched them: no double counting
        total = sum(e.self_device_time_total for e in events)
        inside = sum(e.device_time_total for e in glore_events)
    else:
        total = sum(e.self_cpu_time_total for e in events)
        inside = sum(e.cpu_time_total for e in glore_events)
    return inside / total if total > 0 else 0.0


def format_report(report: dict) -> str:
    dev, setup = report["device"], report["setup"]
    return speed.format_report(
        report,
        COLUMNS,
        f"Training speed on {dev['name']} (torch {dev['torch']}): synthetic clips, width "
        f"{setup['width']:g}, {setup['warmup']} warm-up + {setup['steps']} timed steps, GloRe "
        f"time share from {setup['profile_steps']} profiled eager steps (n/a when compiled)",
        mfu_formula="2 × fvcore MACs × 3 × clips/s",
    )
