"""End-to-end training speed: prepared videos → the real DataLoader → the real training step.

    prepared videos (generated and cached, or a config's train list)
      └─ build_loader(cfg, "train"): TrainSampler, workers, pinned uint8 batches (rgb or yuv420)
           └─ engine.trainer.train_step: model_input → [channels_last] → autocast forward
              → CE → loss read back → backward → SGD → lr schedule (the engine's own step)

Three measurements with the same loader settings, model and batch:

    loader only   iterate the loader, nothing else (wall clock, after warm-up batches)
    device only   the training step on one batch already on the device (synchronised)
    end to end    loader + step as training runs them; data-wait % = time blocked in
                  ``next(loader)`` over the whole time

The limit is named from the first two: the end-to-end speed cannot exceed the smaller one, and
a data-wait above 5 % means the GPU waits for the loader. Videos are read from the page cache
(a list of ``--list-size`` entries over ``--videos`` files), so disk speed is not measured.
Autocast, channels_last_3d and compile are training's: ``runtime.amp``, ``runtime.channels_last``
and ``runtime.compile`` (set by ``--precision``, ``--channels-last``, ``--compile``) resolved by
``engine.forward.fast_path``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from benchmarks.loading.bench import FULL, generate_videos
from benchmarks.report import BenchmarkResult, finish, markdown_table
from benchmarks.speed import common as speed
from data_prep.lists import write_video_list
from videoglore.config import Config, load_config
from videoglore.data import build_loader
from videoglore.engine.checkpoint import TrainState
from videoglore.engine.distributed import setup_runtime
from videoglore.engine.forward import FastPath, fast_path
from videoglore.engine.run import Run, optimization
from videoglore.engine.run_log import RunLog
from videoglore.engine.trainer import train_step
from videoglore.errors import ConfigError
from videoglore.models import MODELS, build_model

HELP = "loader → training step end to end: loader-only, device-only, end-to-end clips/s, data wait"
log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
STEPS_PER_EPOCH = 1000  # epoch length given to the lr schedule (the lr does not change speed)
DATA_WAIT_LIMIT = 5.0  # % of the time blocked in next(loader) above which the loader limits
COLUMNS = [
    ("decode output", "decode_output", ""),
    ("workers", "workers", "d"),
    ("batch", "batch", "d"),
    ("loader only clips/s", "loader_clips_per_s", ".1f"),
    ("per worker", "loader_clips_per_s_per_worker", ".1f"),
    ("device only clips/s", "device_clips_per_s", ".1f"),
    ("MFU", "mfu", ".1%"),
    ("end to end clips/s", "end_to_end_clips_per_s", ".1f"),
    ("data wait", "data_wait_pct", ".1f"),
    ("limit", "limit", ""),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="take data lists, model and clip from this YAML")
    parser.add_argument("--model", default="r50_glore", choices=list(MODELS), help="no --config")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier (tiny: 1/16)")
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--clip", default="8x8x224", help="T x tau x crop (default 8x8x224)")
    parser.add_argument("--batch", type=int, default=16, help="clips per step (default 16)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers (default 4)")
    parser.add_argument("--prefetch", type=int, default=4, help="batches prefetched per worker")
    parser.add_argument(
        "--decode-output", nargs="+", choices=("rgb", "yuv420"), default=["rgb", "yuv420"]
    )
    parser.add_argument("--reader", choices=("pyav", "decord"), default="pyav")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per phase")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps/batches first")
    # the engine's fast path (engine.forward.fast_path); not given: the config's (auto)
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp16", "off"),
        help="runtime.amp (default: the config's; auto = bf16 on CUDA, off on CPU)",
    )
    parser.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        help="runtime.channels_last (default: the config's; auto = on with CUDA)",
    )
    parser.add_argument(
        "--compile",
        choices=("auto", "off", *COMPILE_MODES),
        help="runtime.compile; a mode = on with that mode (default: the config's; auto = on with "
        "CUDA, mode default)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--peak-tflops", type=float, help="device bf16 dense peak (MFU)")
    parser.add_argument("--videos", type=int, default=32, help="generated videos (340x256, 10 s)")
    parser.add_argument("--keyframe-interval", type=int, default=8, help="of generated videos")
    parser.add_argument("--list-size", type=int, default=4096, help="entries of the train list")
    parser.add_argument("--cache", default=str(Path.home() / ".cache/videoglore/bench_data"))
    parser.add_argument("--out", default="", help="write PATH.json and PATH.md")
    parser.add_argument("--quick", action="store_true", help="tiny videos, model and steps (CPU)")


def run(args: argparse.Namespace) -> BenchmarkResult:
    rt = setup_runtime(args.device)
    device = rt.device
    cfg = pipeline_config(args)
    fast = fast_path(cfg.runtime, device)
    torch.manual_seed(0)
    if args.config:  # the config's network, classes and width
        model = build_model(cfg.model)
        args.model, args.width = f"model of {args.config}", cfg.model.width
    else:
        model = build_model(args.model, num_classes=args.num_classes, width=args.width)
    mode = compile_mode(args) if fast.compile else None
    model, net = speed.prepare_model(model, device, fast.channels_last, mode)
    clip = (cfg.data.num_frames, cfg.data.crop_size, cfg.data.crop_size)
    macs = speed.flop_counts(model, clip, device)["gmacs_per_clip"] * 1e9
    peak = args.peak_tflops or speed.peak_tflops(device)
    step = engine_step(cfg, rt, fast, model, net, args.batch)

    rows = []
    for output in args.decode_output:
        cfg.data.decode_output = output
        row = measure(cfg, args, step, device)
        row["mfu"] = speed.mfu(macs, row["device_clips_per_s"], peak, train=True)
        rows.append(row)
    report = {
        "benchmark": "pipeline",
        "device": speed.device_info(device, peak),
        "model": args.model,
        "setup": {
            "clip": f"{cfg.data.num_frames}x{cfg.data.frame_interval}x{cfg.data.crop_size}",
            "width": args.width,
            "precision": PRECISION_NAMES[fast.dtype],
            "channels_last": fast.channels_last,
            "compile": mode or "off",
            "reader": cfg.data.reader,
            "train_list": cfg.data.train_list,
            "steps": args.steps,
            "warmup": args.warmup,
        },
        "rows": rows,
    }
    return finish(report, format_report(report), args.out)


def engine_step(cfg: Config, rt, fast: FastPath, model, net, batch: int):
    """``step(clips, labels)``: the engine's training step (``trainer.train_step``, the one place
    this module calls it) on a ``Run`` holding only what a step uses. It reads the loss back
    (``.item()``) every step, so the host waits for the device as in training."""
    run = Run(
        cfg=cfg,
        rt=rt,
        fast=fast,
        net=net,
        **optimization(model, cfg.train, rt, fast, batch, STEPS_PER_EPOCH),
        train_loader=None,  # the benchmark feeds the batches
        val_loader=None,
        classes=[],
        iters_per_epoch=STEPS_PER_EPOCH,
        state=TrainState(),
        log=RunLog("", enabled=False),
    )
    return lambda clips, labels: train_step(run, clips, labels)


def measure(cfg: Config, args: argparse.Namespace, step, device: torch.device) -> dict:
    """Loader-only, device-only and end-to-end speed of one loader setting."""
    loader = build_loader(cfg, "train", distributed=False, batch_size=args.batch)
    batches = endless(loader)
    count = args.warmup + args.steps
    for _ in range(args.warmup):  # workers started, prefetch queues full
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    loader_speed = args.steps * args.batch / (time.perf_counter() - start)

    clips, labels, _ = next(batches)
    clips = to_device(clips, device)
    timing = speed.time_steps(lambda: step(clips, labels), args.warmup, args.steps, device)
    device_speed = args.batch / (timing["step_ms"] / 1000)

    wait = total = 0.0
    for i in range(count):
        tick = time.perf_counter()
        clips, labels, _ = next(batches)
        got = time.perf_counter()
        step(clips, labels)
        if i >= args.warmup:
            wait, total = wait + got - tick, total + time.perf_counter() - tick
    del batches, loader  # stop the workers
    end_to_end = args.steps * args.batch / total
    wait_pct = 100 * wait / total
    loader_bound = loader_speed < device_speed or wait_pct > DATA_WAIT_LIMIT
    workers = cfg.data.num_workers
    return {
        "decode_output": cfg.data.decode_output,
        "workers": workers,
        "batch": args.batch,
        "loader_clips_per_s": loader_speed,
        "loader_clips_per_s_per_worker": loader_speed / workers if workers else None,
        "device_clips_per_s": device_speed,
        "peak_mem_gib": timing["peak_mem_gib"],
        "end_to_end_clips_per_s": end_to_end,
        "data_wait_pct": wait_pct,
        "limit": f"loader ({workers} workers)" if loader_bound else f"device ({device.type})",
    }


def to_device(clips, device: torch.device):
    """A batch of clips (a tensor or ``YuvClips``) moved to ``device``."""
    if isinstance(clips, tuple):
        return type(clips)(*(part.to(device) for part in clips))
    return clips.to(device)


def endless(loader):
    """Batches of epoch after epoch (the sampler reshuffles per epoch, workers persist)."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def pipeline_config(args: argparse.Namespace) -> Config:
    """The run's config: ``--config`` or the defaults over generated prepared videos."""
    if args.quick:
        args.width, args.clip, args.batch, args.steps, args.warmup = 0.0625, "4x2x32", 2, 3, 1
        args.num_classes = 4
    try:
        T, tau, crop = (int(v) for v in args.clip.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"--clip must look like 8x8x224 (T x tau x crop), got {args.clip!r}"
        ) from None
    cfg = load_config(args.config, fast_path_overrides(args))
    if not args.config:
        cfg.data.num_frames, cfg.data.frame_interval, cfg.data.crop_size = T, tau, crop
        cfg.data.train_scale = [crop * 256 // 224, crop * 320 // 224]
        cfg.data.train_list = str(generated_list(args))
    cfg.data.num_workers, cfg.data.prefetch_factor = args.workers, args.prefetch
    cfg.data.reader = args.reader
    return cfg


def fast_path_overrides(args: argparse.Namespace) -> list[str]:
    """--precision, --channels-last and --compile as overrides of runtime.amp,
    runtime.channels_last and runtime.compile (a compile mode means on)."""
    switch = {"auto": "auto", "on": "true", "off": "false"}
    overrides = []
    if args.precision:
        overrides.append(f"runtime.amp={args.precision}")
    if args.channels_last:
        overrides.append(f"runtime.channels_last={switch[args.channels_last]}")
    if args.compile:
        overrides.append(f"runtime.compile={switch.get(args.compile, 'true')}")
    return overrides


def compile_mode(args: argparse.Namespace) -> str:
    """The torch.compile mode when the model is compiled: --compile's, else "default"."""
    return args.compile if args.compile not in (None, "auto", "off") else "default"


def generated_list(args: argparse.Namespace) -> Path:
    """A prepared train list of ``--list-size`` entries over the generated videos."""
    setup = dict(FULL, videos=args.videos)
    if args.quick:
        setup.update(videos=2, width=64, height=48, seconds=2.0)
    records = generate_videos(Path(args.cache), setup, args.keyframe_interval, "fastdecode")
    size = max(args.list_size if not args.quick else 8, len(records))
    entries = [records[i % len(records)] for i in range(size)]
    path = Path(records[0].path).parent / f"pipeline_{size}.csv"
    write_video_list(path, entries)
    return path


def format_report(report: dict) -> str:
    setup, device = report["setup"], report["device"]
    title = (
        f"Pipeline: {report['model']} (width {setup['width']:g}), clip {setup['clip']}, "
        f"{setup['precision']}, channels_last {setup['channels_last']}, compile "
        f"{setup['compile']}, reader {setup['reader']}; {device['name']}, torch {device['torch']}"
    )
    return title + "\n\n" + markdown_table(report["rows"], COLUMNS)
