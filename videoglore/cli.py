"""Command line: ``python run.py COMMAND`` (or ``videoglore COMMAND``).

Commands::

    prepare    videos + annotations  → clean lists, class index, re-encoded videos (data_prep)
    train      config               → checkpoints, logs (videoglore.engine.trainer)
    test       config + checkpoint  → metrics.json, predictions.csv (videoglore.engine.tester)
    predict    video files          → top-k labels
    demo       synthetic videos → prepare → train → test, CPU-sized, end to end
    flops      params and GFLOPs of the models, with and without GloRe
    benchmark  data | glore | train | test | pipeline

Only this module prints; the library logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from videoglore.errors import VideogloreError

OVERRIDES_HELP = "config overrides as dotted keys, e.g. train.epochs=3 model.depth=101"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args) or 0
    except VideogloreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; finished work is kept, rerun the same command to resume", file=sys.stderr
        )
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoglore",
        description="Video action recognition with GloRe (Graph-based Global Reasoning) networks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_LazyParser
    )

    p = commands.add_parser(
        "prepare",
        help="check and re-encode videos, write train/val lists and the class index",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.fill = _add_prepare_arguments

    p = commands.add_parser(
        "train",
        help="train a model from a config; rerun on the same output dir to resume",
        description="Train a model. Launch with torchrun for several GPUs, e.g. "
        "`torchrun --nproc_per_node 8 run.py train -c configs/k400_r50_glore_8x8.yaml`. "
        "An existing run directory is resumed from its newest valid checkpoint.",
    )
    _add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser(
        "test",
        help="multi-clip x multi-crop test; writes metrics.json and predictions.csv",
        description="Score every video of data.val_list with test.num_clips x test.num_crops "
        "views, average per video and write metrics.json, predictions.csv (and scores.npy) to "
        "the run directory.",
    )
    _add_config_arguments(p)
    p.add_argument("--checkpoint", help="checkpoint file (default: best, else last, of output.dir)")
    p.set_defaults(func=cmd_test)

    p = commands.add_parser(
        "predict",
        help="top-k labels for video files and folders",
        description="Print the top-k labels with probabilities for each video, using the model, "
        "class names and test settings stored in the checkpoint. A file that cannot be read is "
        "reported in one line and the others go on; the exit status is 2 if any failed.",
    )
    p.add_argument("videos", nargs="+", help="video files, or folders (every video under them)")
    p.add_argument("--checkpoint", required=True, help="checkpoint written by `train`")
    p.add_argument("--topk", type=int, default=5, help="labels to print per video (default 5)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--out", help="also write the results to this .csv or .json file")
    p.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help="long videos: score every window of this length, each as `test` scores a video; "
        "--out gets one row per window (README: Long videos)",
    )
    p.add_argument(
        "--stride", type=float, metavar="SECONDS", help="between window starts (default --window)"
    )
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "demo",
        help="end-to-end demo on synthetic videos (CPU, a few minutes)",
        description="Write a small synthetic action dataset (shapes moving in different "
        "directions) as H.264 videos, prepare it with the same code as Kinetics, train a small "
        "3D ResNet with GloRe units, test it with the multi-clip tester, and print the top-1.",
    )
    p.add_argument("-c", "--config", help="demo config (default: the shipped demo.yaml)")
    p.add_argument("--out", default="demo_run", help="folder for videos, lists and the run")
    p.add_argument(
        "--videos-per-class", type=int, default=24, help="videos per class, a quarter held out"
    )
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser(
        "flops",
        help="params and GFLOPs per clip of each model with and without GloRe",
        description="Count parameters and FLOPs (fvcore, one multiply-add = one FLOP) of each "
        "model at its standard clip size and print one table with the GloRe overhead.",
    )
    p.add_argument("models", nargs="*", help="model names (default: all)")
    p.set_defaults(func=cmd_flops)

    _add_benchmark_parser(commands)
    return parser


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)


class _LazyParser(argparse.ArgumentParser):
    """A subcommand parser that adds its arguments (``fill(parser)``) only when it parses.

    Building the CLI then imports no module a subcommand needs (torch, numpy, PyAV), so
    ``run.py --help`` and a mistyped command answer at once; ``run.py prepare ...`` pays for
    ``data_prep.prepare`` and ``run.py benchmark ...`` for the benchmark modules.
    """

    fill: Callable[[argparse.ArgumentParser], None] | None = None

    def parse_known_args(self, args=None, namespace=None):
        if self.fill is not None:
            fill, self.fill = self.fill, None
            fill(self)
        return super().parse_known_args(args, namespace)


def _add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    from data_prep import prepare

    p.description = prepare.__doc__
    prepare.add_arguments(p)
    p.set_defaults(func=cmd_prepare)


def _add_benchmark_parser(commands) -> None:
    from benchmarks import BENCHMARKS

    p = commands.add_parser(
        "benchmark",
        help="benchmarks: " + ", ".join(BENCHMARKS),
        description="Measure speed or accuracy; each writes its results into its output folder.",
    )
    p.fill = _add_benchmarks


def _add_benchmarks(p: argparse.ArgumentParser) -> None:
    from benchmarks import BENCHMARKS, load_benchmark

    kinds = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in BENCHMARKS:
        module = load_benchmark(name)
        sub = kinds.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(func=_benchmark_command(module.run))


def _benchmark_command(run):
    def command(args) -> int:
        result = run(args)
        print(result.table)
        if result.files:
            print("wrote " + ", ".join(map(str, result.files)))
        return 0

    return command


def _load(args):
    from videoglore.config import load_config

    return load_config(args.config, args.overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    from data_prep.prepare import options_from_args, prepare

    print(prepare(options_from_args(args)).format())
    return 0


def cmd_train(args) -> int:
    from videoglore.engine.trainer import train

    result = train(_load(args))
    if result.get("rank", 0) == 0:
        print(f"training finished; run directory: {result['run_dir']}")
    return 0


def cmd_test(args) -> int:
    from videoglore.engine.tester import test

    metrics = test(_load(args), checkpoint=args.checkpoint)
    if metrics:
        print(_format_metrics(metrics))
    return 0


def cmd_predict(args) -> int:
    from videoglore.engine.inference import (
        check_output_path,
        find_videos,
        predict,
        write_predictions,
    )

    if args.window is not None or args.stride is not None:
        return _predict_windows(args)
    check_output_path(args.out)
    results = []
    for result in predict(find_videos(args.videos), args.checkpoint, args.topk, args.device):
        results.append(result)
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
            continue
        print(result.video)
        for name, prob in result.labels:
            print(f"  {prob:6.1%}  {name}")
    if args.out:
        print(f"wrote {write_predictions(args.out, results)}")
    return 2 if any(r.error for r in results) else 0


def _predict_windows(args) -> int:
    from videoglore.engine.inference import check_output_path, find_videos
    from videoglore.engine.windows import (
        check_window_arguments,
        predict_windows,
        write_window_predictions,
    )
    from videoglore.errors import ConfigError

    if args.window is None:
        raise ConfigError("predict --stride needs --window SECONDS")
    check_window_arguments(args.window, args.stride, args.topk)
    check_output_path(args.out)
    videos = find_videos(args.videos)
    results = []
    progress = sys.stderr.isatty()
    for r in predict_windows(
        videos, args.checkpoint, args.window, args.stride, args.topk, args.device, progress
    ):
        results.append(r)
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
            continue
        print(f"{r.video}: {len(r.windows)} windows, {r.frames / r.fps:.2f} s at {r.fps:g} fps")
        for segment in r.timeline:
            print(f"  {segment.start:9.2f} - {segment.end:9.2f} s  {segment.label}")
        print("  over all windows:")
        for name, prob in r.labels:
            print(f"  {prob:6.1%}  {name}")
    if args.out:
        print(f"wrote {write_window_predictions(args.out, results)}")
    return 2 if any(r.error for r in results) else 0


def cmd_demo(args) -> int:
    from videoglore.config import shipped_config
    from videoglore.demo import run_demo

    config = args.config or shipped_config("demo.yaml")
    metrics = run_demo(config, args.out, args.overrides, args.videos_per_class)
    print(_format_metrics(metrics))
    return 0


def cmd_flops(args) -> int:
    from videoglore.models.flops import flops_table, format_flops_table

    print(format_flops_table(flops_table(args.models or None)))
    return 0


def _format_metrics(m: dict) -> str:
    lines = [
        f"videos tested: {m['num_videos']} (skipped {m['num_skipped']})",
        f"video top-1: {m['video_top1']:.2%}   top-5: {m['video_top5']:.2%}   "
        f"mean class accuracy: {m['mean_class_accuracy']:.2%}",
        f"clip  top-1: {m['clip_top1']:.2%}   top-5: {m['clip_top5']:.2%}",
    ]
    if "run_dir" in m:
        lines.append(
            f"metrics: {m['run_dir']}/metrics.json  predictions: {m['run_dir']}/predictions.csv"
        )
    return "\n".join(lines)
