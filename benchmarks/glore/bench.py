"""Does GloRe help? The same small 3D ResNet with and without GloRe units on relational videos.

The paper (Chen et al., CVPR 2019, §1, §3) claims that GloRe units let a 3D CNN relate regions far
apart in space and time. ``benchmarks.glore.relational`` writes videos whose labels are exactly such
relations (toward/away, in/out of phase, which object moves first, same/different shape), so
any gain must come from relating distant things. Flow (the normal code path, nothing special)::

    write_relational_videos ─▶ data_prep.prepare (folder-per-class) ─▶ train.csv, val.csv
      for variant in (r50, r50_glore, r50_wide) × seed:
        engine.trainer.train(cfg) ─▶ log.jsonl (val top-1 per epoch, timestamps)
        engine.tester.test(cfg, last checkpoint) ─▶ metrics.json, predictions.csv
    ─▶ results.json, results.md (mean ± std video top-1, per relation, params, GFLOPs, time),
       val_vs_time.png

``r50_wide`` is a plain R50 whose width is chosen so that its GFLOPs match ``r50_glore``: the
control for "GloRe helps only because it adds compute". The tester scores the *last* checkpoint
(not the best on validation) because the validation videos are also the test videos here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.glore.relational import (
    RELATIONS,
    RelationalOptions,
    class_names,
    write_relational_videos,
)
from benchmarks.glore.report import COLOURS, format_results, summarize
from benchmarks.report import BenchmarkResult
from data_prep.files import atomic_write_text, write_json
from videoglore.config import Config, ModelConfig
from videoglore.errors import TrainingError

HELP = "does GloRe help? plain vs GloRe 3D ResNet on relational videos (CPU, ~13 min of one core)"
log = logging.getLogger(__name__)

# Sizes: default ~13 min of one core's CPU time (wall time on shared cores is longer), --quick
# ~20 s; see benchmarks/glore/RESULTS.md for the measured numbers.
PRESETS = {
    "default": dict(
        videos_per_class=48, val_videos_per_class=12, num_frames=16, size=32, epochs=16, seeds=3
    ),
    "quick": dict(
        videos_per_class=12, val_videos_per_class=4, num_frames=16, size=32, epochs=4, seeds=1
    ),
}
VARIANTS = ("r50", "r50_glore", "r50_wide")


@dataclasses.dataclass
class BenchSetup:
    """Everything a benchmark run depends on (stored in results.json)."""

    relations: tuple[str, ...]
    videos_per_class: int
    val_videos_per_class: int
    num_frames: int  # frames per generated video; a training clip covers all of them
    size: int
    epochs: int
    seeds: int
    variants: tuple[str, ...]
    width: float = 0.125
    batch_size: int = 8
    lr: float = 0.05
    workers: int = 0
    threads: int = 1
    data_seed: int = 0
    first_seed: int = 0
    glore_nodes: float = 1.0  # r50_glore's node multiplier (model.glore_nodes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/bench_glore", help="videos, lists, runs, results")
    parser.add_argument("--quick", action="store_true", help="smoke-test size (~20 s)")
    parser.add_argument("--relations", nargs="+", choices=sorted(RELATIONS), help="default: all")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="default: all three")
    parser.add_argument("--videos-per-class", type=int, help="training videos per class")
    parser.add_argument("--val-videos-per-class", type=int, help="test videos per class")
    parser.add_argument("--num-frames", type=int, help="frames per video (even, >= 8)")
    parser.add_argument("--size", type=int, help="frame height = width in pixels")
    parser.add_argument("--epochs", type=int, help="epochs per run (same for every variant)")
    parser.add_argument("--seeds", type=int, help="training seeds per variant")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument("--width", type=float, default=0.125, help="R50 channel multiplier")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05, help="SGD lr at the batch size")
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated videos")
    parser.add_argument(
        "--glore-nodes", type=float, default=1.0, help="r50_glore node multiplier (released: 1)"
    )
    parser.add_argument("--report-dir", help="also copy results.md/json and the plot here")


def setup_from_args(args: argparse.Namespace) -> BenchSetup:
    preset = dict(PRESETS["quick" if args.quick else "default"])
    for key in preset:
        value = getattr(args, key, None)
        if value is not None:
            preset[key] = value
    return BenchSetup(
        relations=tuple(args.relations or RELATIONS),
        variants=tuple(args.variants or VARIANTS),
        width=args.width,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        threads=args.threads,
        data_seed=args.data_seed,
        first_seed=args.first_seed,
        glore_nodes=args.glore_nodes,
        **preset,
    )


def run(args: argparse.Namespace) -> BenchmarkResult:
    setup = setup_from_args(args)
    report = run_benchmark(setup, Path(args.out))
    table = format_results(report)
    out = Path(args.out)
    if args.report_dir:
        dest = Path(args.report_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("results.md", "results.json", "val_vs_time.png"):
            shutil.copy2(out / name, dest / name)
    files = [out / name for name in ("results.md", "results.json", "val_vs_time.png")]
    return BenchmarkResult(table, report, files)


def run_benchmark(setup: BenchSetup, out: Path) -> dict:
    """Generate + prepare the data, train and test every variant × seed; write the results.

    Training and testing use ``setup.threads`` torch intra-op threads (one by default: on shared
    cores two OpenMP threads wait for each other, measured 5-30x slower per step than one thread
    while other jobs ran); the caller's thread count is restored afterwards.
    """
    from videoglore.threads import torch_threads

    start = time.perf_counter()
    with torch_threads(max(1, setup.threads)):
        prepared = prepare_data(setup, out)
        data_seconds = time.perf_counter() - start
        widths = {"r50": setup.width, "r50_glore": setup.width}
        if "r50_wide" in setup.variants:
            widths["r50_wide"] = matching_width(setup)
        runs = []
        seeds = range(setup.first_seed, setup.first_seed + setup.seeds)
        for seed in seeds:  # seed-major: a cut-short run still compares variants
            for variant in setup.variants:
                cfg = run_config(setup, variant, widths[variant], seed, prepared, out)
                runs.append(train_and_test(cfg, variant, seed))
        costs = {v: model_cost(setup, v, widths[v]) for v in setup.variants}
    report = summarize(setup, runs, costs, widths)
    report["data_seconds"] = data_seconds
    report["total_seconds"] = time.perf_counter() - start
    report["cpu_count"] = os.cpu_count()
    report["load_average_end"] = list(os.getloadavg())
    write_json(out / "results.json", report)
    atomic_write_text(out / "results.md", format_results(report) + "\n")
    from videoglore.engine.plots import plot_val_vs_time

    plot_val_vs_time(
        runs,
        out / "val_vs_time.png",
        colours=COLOURS,
        # chance, and "knows the relation, guesses which of its 2 classes"
        lines={"chance": 1 / len(class_names(setup.relations)), "relation type only": 0.5},
        title="Does GloRe help? validation accuracy vs training time",
        xlabel="training wall time (s, 1 thread, shared CPU)",
    )
    return report


def prepare_data(setup: BenchSetup, out: Path) -> Path:
    """The relational videos prepared in ``out/prepared`` (reused when their options match)."""
    from data_prep.prepare import PrepareOptions, prepare

    data = RelationalOptions(
        relations=setup.relations,
        videos_per_class=setup.videos_per_class,
        val_videos_per_class=setup.val_videos_per_class,
        num_frames=setup.num_frames,
        size=setup.size,
        seed=setup.data_seed,
    )
    source, prepared = out / "prepared" / "source", out / "prepared"
    if (prepared / "options.json").is_file() and (prepared / "options.json").read_text() == (
        json.dumps(dataclasses.asdict(data))
    ):
        log.info("reusing the prepared videos in %s", prepared)
        return prepared
    shutil.rmtree(prepared, ignore_errors=True)
    write_relational_videos(source, data)
    classes = source / "classes.json"  # keep the generator's class order
    write_json(classes, class_names(setup.relations))
    folders = {split: str(source / split) for split in ("train", "val")}
    # no re-encode: the generator already wrote H.264 with short GOPs; prepare checks them
    prepare(
        PrepareOptions(
            str(prepared),
            folders=folders,
            classes=str(classes),
            reencode=False,
            workers=1,
            progress=False,
        )
    )
    atomic_write_text(prepared / "options.json", json.dumps(dataclasses.asdict(data)))
    return prepared


def run_config(
    setup: BenchSetup, variant: str, width: float, seed: int, prepared: Path, out: Path
) -> Config:
    """The train/test config of one run: same data, budget and recipe for every variant."""
    S, T = setup.size, setup.num_frames
    cfg = Config()
    cfg.data = dataclasses.replace(
        cfg.data,
        train_list=str(prepared / "train.csv"),
        val_list=str(prepared / "val.csv"),
        num_frames=T // 2,  # every 2nd frame: a clip spans the whole video, events stay in
        frame_interval=2,
        train_scale=[S, S],  # no scale jitter: a crop would cut off the far-apart objects
        crop_size=S,
        test_scale=S,
        flip=True,  # every relation is unchanged by a horizontal flip
        num_workers=setup.workers,
    )
    cfg.model = ModelConfig(
        arch="resnet",
        depth=50,
        glore=variant == "r50_glore",
        num_classes=len(class_names(setup.relations)),
        width=width,
        dropout=0.2,
        glore_nodes=setup.glore_nodes,
    )
    cfg.train = dataclasses.replace(
        cfg.train,
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        lr=setup.lr,
        lr_batch=setup.batch_size,  # lr as given, no linear rescaling
        weight_decay=5e-4,
        warmup_epochs=1.0,
        schedule="cosine",
        seed=seed,
        val_every=1,
        keep_last=1,
        # forward-only precise BN (engine/precise_bn.py): trains exactly as without it, but the
        # BN statistics used by validation and testing match the final weights; without it the
        # from-scratch GloRe nets' eval-mode outputs can explode (val loss 1e7 and more)
        precise_bn=8,
        precise_bn_update="none",
        precise_bn_average="exact",
        log_every=5,
    )
    cfg.runtime = dataclasses.replace(cfg.runtime, device="cpu", amp="off")
    # one clip covers the whole video, so K clips would repeat it; the square frame = 1 crop
    cfg.test = dataclasses.replace(cfg.test, num_clips=1, num_crops=1, batch_size=8)
    cfg.output.dir = str(out / "runs" / variant / f"seed{seed}")
    return cfg


def train_and_test(cfg: Config, variant: str, seed: int) -> dict:
    """One fresh run through the normal trainer and tester; returns its record.

    A run that the trainer stops on a non-finite loss or validation (a from-scratch GloRe net
    can blow up in eval mode, README "Models") is recorded as ``diverged`` with the message,
    without a test: the benchmark goes on with the other runs and reports how many diverged.
    """
    from videoglore.engine import checkpoint as ckpt
    from videoglore.engine.tester import test
    from videoglore.engine.trainer import train

    run_dir = Path(cfg.output.dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # fresh run: timings must not include a resume
    log.info("training %s seed %d in %s", variant, seed, run_dir)
    start, cpu_start = time.perf_counter(), time.process_time()
    record = dict(variant=variant, seed=seed, run_dir=str(run_dir), diverged="")
    try:
        train(cfg)
    except TrainingError as exc:  # non-finite loss or validation scores: a result, not a crash
        log.warning("%s seed %d diverged: %s", variant, seed, exc)
        record["diverged"] = str(exc)
    record |= dict(
        train_seconds=time.perf_counter() - start,
        train_cpu_seconds=time.process_time() - cpu_start,  # less noisy than wall time when shared
        curve=val_curve(run_dir / "log.jsonl"),
    )
    if record["diverged"]:
        return record | dict(video_top1=None, per_relation={}, test_seconds=0.0, glore_usage={})
    last = ckpt.epoch_path(run_dir, cfg.train.epochs)
    metrics = test(cfg, checkpoint=str(last))
    return record | dict(
        video_top1=metrics["video_top1"],
        per_relation=relation_accuracy(run_dir / "predictions.csv"),
        test_seconds=time.perf_counter() - start - record["train_seconds"],
        glore_usage=glore_usage(last),
    )


def relation_accuracy(predictions: Path) -> dict[str, float]:
    """Top-1 per relation (its two classes) from the tester's predictions.csv."""
    import csv

    hits: dict[str, list[bool]] = {}
    with predictions.open(newline="") as f:
        for row in csv.DictReader(f):
            relation = row["label"].split("_")[0]
            hits.setdefault(relation, []).append(row["top1"] == row["label"])
    return {r: float(np.mean(h)) for r, h in hits.items()}


def val_curve(log_path: Path) -> list[tuple[float, float]]:
    """(seconds since the run started, single-clip val top-1) per epoch, from log.jsonl."""
    from videoglore.engine.run_log import read_log

    records = read_log(log_path)
    start = next(r["time"] for r in records if r["kind"] == "start")
    return [
        (r["time"] - start, r["val_top1"])
        for r in records
        if r["kind"] == "epoch" and "val_top1" in r
    ]


def model_cost(setup: BenchSetup, variant: str, width: float) -> dict:
    """Params (M) and GFLOPs (fvcore, multiply-adds) of one clip at the benchmark's size."""
    import torch

    from videoglore.models import build_model
    from videoglore.models.flops import module_flops

    glore = variant == "r50_glore"
    model = build_model(
        "r50_glore" if glore else "r50",
        num_classes=len(class_names(setup.relations)),
        width=width,
        **({"glore_nodes": setup.glore_nodes} if glore else {}),
    )
    flops = module_flops(model, torch.zeros(1, 3, setup.num_frames // 2, setup.size, setup.size))
    params = sum(p.numel() for p in model.parameters())
    return {"params_M": params / 1e6, "gflops": flops[""] / 1e9, "width": width}


def matching_width(setup: BenchSetup) -> float:
    """Width of a plain R50 whose GFLOPs are closest to the GloRe R50 at ``setup.width``.

    FLOPs grow about as width², so the square-root guess is refined over a few nearby widths
    (channel counts are rounded, so neighbouring widths can give the same net).
    """
    target = model_cost(setup, "r50_glore", setup.width)["gflops"]
    base = model_cost(setup, "r50", setup.width)["gflops"]
    guess = setup.width * (target / base) ** 0.5
    candidates = [round(guess * f, 4) for f in (0.96, 0.98, 1.0, 1.02, 1.04)]
    return min(candidates, key=lambda w: abs(model_cost(setup, "r50", w)["gflops"] - target))


def glore_usage(checkpoint: Path) -> dict[str, float]:
    """Mean |weight| of each GloRe unit's output BatchNorm ("blocker"), per unit.

    The blocker's weight starts at zero (released ``global_reasoning_unit.py``), so a fresh unit
    is the identity; how far it grew says how much the trained net uses the unit's output.
    """
    from videoglore.engine.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)["model"]
    return {
        key.removesuffix(".blocker.weight"): float(value.abs().mean())
        for key, value in state.items()
        if key.endswith("blocker.weight")
    }
