"""Shared parts of the speed benchmarks ``benchmark train`` and ``benchmark test``.

One measurement per (model × precision × channels_last × compile) on synthetic uint8 input that
already lives on the device, so only the network (and its optimizer step) is timed::

    build_model ─▶ fvcore MACs per clip (batch 1, by module) ─▶ .to(device), channels_last_3d,
      torch.compile ─▶ warm-up steps (cudnn autotune, compilation; not timed)
      ─▶ synchronize ─▶ N timed steps ─▶ synchronize ─▶ step time, items/s, peak memory, MFU

MFU (model FLOPs utilisation, PaLM appendix B) = model FLOPs per second ÷ the device's dense bf16
peak. fvcore counts one multiply-add as one flop (MACs, see ``videoglore.models.flops``), while
peak TFLOPS count it as two, so model FLOPs = 2 × MACs per item, × 3 for a training step (backward
≈ 2 × forward). fp32/TF32 runs are also divided by the bf16 peak: one yardstick for every row.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.report import BenchmarkResult, finish, markdown_table
from videoglore.engine.distributed import setup_runtime
from videoglore.engine.forward import amp_dtype
from videoglore.errors import ConfigError
from videoglore.models import MODELS, GloRe, build_model, default_clip
from videoglore.models.flops import module_flops

log = logging.getLogger(__name__)

# Dense (no sparsity) bf16 tensor-core peaks in TFLOPS from NVIDIA's data sheets, matched as
# substrings of torch.cuda.get_device_name(). "H100 80GB HBM3" is the SXM part's name; the PCIe
# and NVL parts have lower peaks and are deliberately not matched (pass --peak-tflops).
PEAK_BF16_TFLOPS = {"H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H200": 989.0, "A100": 312.0}
PRECISIONS = ("fp32", "tf32", "bf16")  # fp32: TF32 off; tf32: TF32 convs/matmuls; bf16: autocast
SWITCHES = ("off", "on")
GLORE_RANGE = "glore::"  # record_function prefix of the GloRe units' forward and backward ranges


@dataclass(frozen=True)
class Variant:
    """How one measurement runs the network."""

    precision: str  # one of PRECISIONS
    channels_last: bool  # model (and training input) in channels_last_3d
    compile: bool  # torch.compile(model)


def peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of ``device`` from ``PEAK_BF16_TFLOPS``; None on CPU or an unlisted GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = peak_tflops_for(name)
    if peak is None:
        log.warning("no bf16 peak known for %r; pass --peak-tflops to get MFU", name)
    return peak


def peak_tflops_for(device_name: str) -> float | None:
    """``PEAK_BF16_TFLOPS`` entry whose key occurs in ``device_name`` (None if none does)."""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def mfu(macs_per_item: float, items_per_s: float, peak: float | None, train: bool) -> float | None:
    """Model FLOPs utilisation: 2 × MACs (× 3 for forward + backward) × items/s ÷ peak.

    Args:
        macs_per_item: fvcore count (multiply-adds) of one forward on one clip.
        items_per_s: clips (views) through the network per second.
        peak: device peak in TFLOPS; None (CPU, unknown GPU) gives None.
        train: a training step (forward + backward ≈ 3 forwards) rather than a forward only.
    """
    if not peak:
        return None
    flops = 2.0 * macs_per_item * (3.0 if train else 1.0) * items_per_s
    return flops / (peak * 1e12)


def parse_clip(text: str) -> tuple[int, int, int]:
    """``"8x224x224"`` → (8, 224, 224)."""
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--clip must look like 8x224x224 (T×H×W), got {text!r}") from None
    return t, h, w


def add_common_arguments(parser: argparse.ArgumentParser, batch_help: str) -> None:
    """Options shared by ``benchmark train`` and ``benchmark test``."""
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (tiny: 1/16)")
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--clip", help="T×H×W, e.g. 4x32x32 (default: each model's own clip)")
    parser.add_argument("--batch", type=int, help=batch_help)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument(
        "--precision", nargs="+", choices=PRECISIONS, help="default: tf32 bf16 on CUDA, fp32 on CPU"
    )
    parser.add_argument(
        "--channels-last", nargs="+", choices=SWITCHES, help="default: off on (CUDA), off (CPU)"
    )
    parser.add_argument(
        "--compile", nargs="+", choices=SWITCHES, help="default: off on (CUDA), off (CPU)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--peak-tflops", type=float, help="device bf16 dense peak (MFU)")
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")


def variants_from_args(args: argparse.Namespace, device: torch.device) -> list[Variant]:
    """Every combination of the requested settings, with per-device defaults."""
    cuda = device.type == "cuda"
    precisions = args.precision or (["tf32", "bf16"] if cuda else ["fp32"])
    layouts = args.channels_last or (["off", "on"] if cuda else ["off"])
    compiles = args.compile or (["off", "on"] if cuda else ["off"])
    return [
        Variant(p, layout == "on", comp == "on")
        for p in precisions
        for layout in layouts
        for comp in compiles
    ]


def set_precision(variant: Variant, device: torch.device) -> torch.dtype | None:
    """Set TF32 for the variant and return its autocast dtype (``engine.forward.amp_dtype``)."""
    tf32 = variant.precision != "fp32"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return amp_dtype("bf16" if variant.precision == "bf16" else "off", device)


def prepare_model(
    model: nn.Module, device: torch.device, channels_last: bool, compile_mode: str | None
) -> tuple[nn.Module, nn.Module]:
    """(``model`` on ``device``, in channels_last_3d if asked; the module to run:
    ``torch.compile(model, mode=compile_mode)``, or the model itself when ``compile_mode`` is
    None)."""
    model = model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    return model, net


def setup_variant(
    name: str,
    variant: Variant,
    clip: tuple[int, int, int],
    args: argparse.Namespace,
    device: torch.device,
    flops_cache: dict,
) -> tuple[torch.dtype | None, nn.Module, nn.Module, dict]:
    """Precision switches, a seeded model (plain, and the module to run) and its FLOP counts.

    FLOPs are the same for every variant of a model and clip, so they are counted once.
    """
    dtype = set_precision(variant, device)
    torch.manual_seed(0)
    model = build_model(name, num_classes=args.num_classes, width=args.width)
    model, net = prepare_model(
        model, device, variant.channels_last, "default" if variant.compile else None
    )
    if (name, clip) not in flops_cache:
        flops_cache[name, clip] = flop_counts(model, clip, device)
    return dtype, model, net, flops_cache[name, clip]


def clip_for(name: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """``--clip`` or the model's own training clip (``default_clip``)."""
    return parse_clip(args.clip) if args.clip else default_clip(name)


def flop_counts(model: nn.Module, clip: tuple[int, int, int], device: torch.device) -> dict:
    """MACs per clip and the GloRe units' share of them (fvcore by module, batch 1)."""
    counts = module_flops(model, torch.zeros(1, 3, *clip, device=device))
    total = counts[""]
    glore = sum(counts.get(name, 0) for name in glore_unit_names(model))
    has_glore = bool(glore_unit_names(model))
    return {"gmacs_per_clip": total / 1e9, "glore_flop_share": glore / total if has_glore else None}


def glore_unit_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, GloRe)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> dict:
    """Seconds per step over ``steps`` synchronised steps after ``warmup`` untimed ones, and the
    peak CUDA memory of the timed steps (None on CPU)."""
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"step_ms": 1000.0 * seconds, "peak_mem_gib": peak}


def release(device: torch.device) -> None:
    """Drop cached compiled graphs and free memory between measurements."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_info(device: torch.device, peak: float | None) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "name": name,
        "type": device.type,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }


def run_benchmark(
    args: argparse.Namespace,
    kind: str,
    measure: Callable[..., dict],
    default_batch: tuple[int, int],
    setup: dict,
    format_report: Callable[[dict], str],
) -> BenchmarkResult:
    """The ``run`` of ``benchmark train`` and ``benchmark test``: one row per (model, variant),
    each from ``measure(name, variant, clip, args, device, peak, flops_cache)``, then the report.

    ``default_batch`` = (on CUDA, on CPU) when ``--batch`` is not given; ``setup`` adds the
    benchmark's own settings to the report's.
    """
    device = setup_runtime(args.device).device
    args.batch = args.batch or default_batch[device.type != "cuda"]
    peak = args.peak_tflops or peak_tflops(device)
    flops_cache: dict[tuple, dict] = {}
    rows = measure_all(
        args,
        device,
        lambda name, variant, clip: measure(name, variant, clip, args, device, peak, flops_cache),
    )
    report = {
        "benchmark": kind,
        "device": device_info(device, peak),
        "setup": {k: getattr(args, k) for k in ("width", "batch", "steps", "warmup")} | setup,
        "rows": rows,
    }
    return finish(report, format_report(report), args.out)


def measure_all(
    args: argparse.Namespace,
    device: torch.device,
    measure: Callable[[str, Variant, tuple[int, int, int]], dict],
) -> list[dict]:
    """One row per (model, variant); out-of-memory and compile failures become an ``error`` cell
    so that one failing setting does not lose the others."""
    rows = []
    for name in args.models:
        clip = clip_for(name, args)
        for variant in variants_from_args(args, device):
            row = {
                "model": name,
                "clip": "x".join(map(str, clip)),
                "batch": args.batch,
                "precision": variant.precision,
                "channels_last": variant.channels_last,
                "compile": variant.compile,
            }
            log.info("measuring %s", row)
            try:
                row.update(measure(name, variant, clip))
            except torch.OutOfMemoryError:
                row["error"] = "out of memory: lower --batch"
            except Exception as exc:  # noqa: BLE001  (compiler errors have many types)
                if not variant.compile:
                    raise
                row["error"] = f"torch.compile failed: {type(exc).__name__}"
                log.warning("torch.compile failed for %s: %s", name, exc)
            release(device)
            rows.append(row)
    return rows


def format_report(report: dict, columns: list, first_sentence: str, mfu_formula: str) -> str:
    """The markdown of ``benchmark train``/``test``: what was measured (``first_sentence``) and
    how MFU is counted (``mfu_formula``, the FLOP rate divided by the peak), then the table."""
    peak = report["device"]["peak_bf16_tflops"]
    mfu_note = (
        f"MFU = {mfu_formula} ÷ {peak:g} TFLOPS (bf16 dense peak, every row)"
        if peak
        else "MFU n/a (CPU or unknown peak; pass --peak-tflops)"
    )
    return f"{first_sentence}; {mfu_note}.\n\n" + markdown_table(report["rows"], columns)
