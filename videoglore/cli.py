"""Command line: ``python run.py COMMAND`` (or ``videoglore COMMAND``).

Commands::

    prepare    videos + annotations  → clean lists, class index, re-encoded videos (data_prep)
    train      config               → checkpoints, logs (videoglore.engine.trainer)
    test       config + checkpoint  → metrics.json, predictions.csv (videoglore.engine.tester)
    predict    video files          → top-k labels (a checkpoint, or an exported ONNX model)
    export     checkpoint           → ONNX or TorchScript model with its classes and test settings
    demo       synthetic videos → prepare → train → test, CPU-sized, end to end
    flops      params and GFLOPs of the models, with and without GloRe
    download   released weights by name (zoo:NAME) → the local cache, for machines without network
    benchmark  data | glore | train | test | pipeline

Only this module prints; the library logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable

from data_prep.errors import bounded_repr
from videoglore.errors import ConfigError, VideogloreError

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
        "the run directory. A checkpoint of ours brings its model section and clip settings "
        "(data.num_frames, frame_interval, crop_size, test_scale, normalization); a dotted "
        "override on the command line wins; the rest comes from the config. A released .pth "
        "is tested with the config's model.",
    )
    _add_config_arguments(p)
    p.add_argument(
        "--checkpoint",
        help="checkpoint file, or a released one by name: zoo:r50_glore_k400, ... (default: best, "
        "else last, of output.dir)",
    )
    p.set_defaults(func=cmd_test)

    p = commands.add_parser(
        "predict",
        help="top-k labels for video files and folders",
        description="Print the top-k labels with probabilities for each video, using the model, "
        "class names and test settings stored in the checkpoint (dotted overrides change them). "
        "With -c, as `test`: the checkpoint's model and clip settings, the config's test "
        "section; a weights-only file (released .pth) needs -c. With --model, an ONNX file "
        "written by `export` runs with ONNX Runtime and without torch, with the settings stored "
        "in it. A file that cannot be read is reported in one line and the others go on; the "
        "exit status is 2 if any failed.",
    )
    p.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files, or folders (every video under them); an item section.key=value is a "
        "config override, e.g. test.num_clips=1",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint or weights file, or zoo:NAME (released)")
    source.add_argument("--model", help="ONNX model written by `export` (no torch needed)")
    p.add_argument("-c", "--config", help="YAML config (needed for weights-only files)")
    p.add_argument("--topk", type=int, default=5, help="labels to print per video (default 5)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="default: runtime.device (auto)"
    )
    p.add_argument(
        "--out", help="also write the results to this .csv or .json file (folders are made)"
    )
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
    p.intermixed = True
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "export",
        help="write a checkpoint's network as ONNX or TorchScript, with its classes and settings",
        description="Export the network of a checkpoint: it takes normalised clips float32 "
        "(N, 3, T, S, S) and returns logits (N, classes). The class names, clip shape, "
        "normalisation and test protocol go into the ONNX metadata (TorchScript: inside the "
        "archive and in FILE.json). The file is written only if its logits on random clips "
        "match the checkpoint's model.",
    )
    p.add_argument(
        "checkpoint", help="checkpoint written by `train`, or a weights file / zoo:NAME with -c"
    )
    p.add_argument(
        "-c", "--config", help="YAML config, as for predict (needed for weights-only files)"
    )
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="default onnx")
    p.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    p.intermixed = True
    p.set_defaults(func=cmd_export)

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

    p = commands.add_parser(
        "download",
        help="download released weights by name into the cache (zoo:NAME)",
        description="Download released weights (the names model.pretrained, model.weights and "
        "--checkpoint take as zoo:NAME) into the cache folder ($VIDEOGLORE_CACHE/weights, "
        "default ~/.cache/videoglore/weights), e.g. on a login node before training on nodes "
        "without network. $VIDEOGLORE_ZOO_URL names a mirror. Without NAME: list the names.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="e.g. resnet50-lite r50_glore_k400")
    p.set_defaults(func=cmd_download)

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
    # positionals may follow options (``predict a.mp4 --checkpoint x test.num_clips=1``)
    intermixed: bool = False
    _mixing: bool = False

    def complete(self) -> argparse.ArgumentParser:
        """This parser with its arguments (added now if they were not yet)."""
        if self.fill is not None:
            fill, self.fill = self.fill, None
            fill(self)
        return self

    def parse_known_args(self, args=None, namespace=None):
        self.complete()
        if self.intermixed and not self._mixing:  # it calls parse_known_args itself
            self._mixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._mixing = False
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

    summary = prepare(options_from_args(args))
    print(summary.format())
    return 1 if summary.pending else 0  # --merge before every shard finished: lists incomplete


def cmd_train(args) -> int:
    cfg = _load(args)  # a bad config answers before torch is imported
    from videoglore.engine.trainer import train

    result = train(cfg)
    if result.get("rank", 0) == 0:
        print(f"training finished; run directory: {result['run_dir']}")
    return 0


def cmd_test(args) -> int:
    cfg = _load(args)  # a bad config answers before torch is imported
    from videoglore.config import override_keys
    from videoglore.engine.tester import test

    explicit = override_keys(args.overrides)
    metrics = test(cfg, args.checkpoint, explicit, config_name=args.config or "")
    if metrics:
        print(_format_metrics(metrics))
    return 0


def cmd_predict(args) -> int:
    from videoglore.engine.predictions import check_output_path, find_videos, write_predictions

    check_output_path(args.out)
    paths, overrides = _split_overrides(args.videos)
    if not paths:
        raise ConfigError(f"predict: no video given, only overrides ({', '.join(overrides)})")
    if args.window is not None or args.stride is not None:
        return _predict_windows(args, find_videos(paths), overrides)
    if args.model:  # ONNX Runtime, numpy and PyAV only: torch is never imported
        from videoglore.engine.onnx_predict import predict_onnx

        if args.config or overrides:
            raise ConfigError(
                "predict --model: an exported model carries its settings; -c and overrides "
                "apply to --checkpoint only"
            )
        device = args.device or "auto"
        predictions = predict_onnx(find_videos(paths), args.model, args.topk, device)
    else:
        from videoglore.engine.inference import predict

        predictions = predict(
            find_videos(paths), args.checkpoint, args.topk, args.device, args.config, overrides
        )
    results = []
    for result in predictions:
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


def _predict_windows(args, videos: list[str], overrides: list[str]) -> int:
    from videoglore.engine.windows import (
        check_window_arguments,
        predict_windows,
        write_window_predictions,
    )

    if args.window is None:
        raise ConfigError("predict --stride needs --window SECONDS")
    if args.model:
        raise ConfigError("predict --window scores with --checkpoint; --model (ONNX) cannot")
    check_window_arguments(args.window, args.stride, args.topk)
    windows = predict_windows(
        videos,
        args.checkpoint,
        args.window,
        args.stride,
        args.topk,
        args.device,
        args.config,
        overrides,
        progress=sys.stderr.isatty(),
    )
    results = []
    for r in windows:
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


_OVERRIDE = re.compile(r"^[A-Za-z_]+(\.[A-Za-z_0-9]+)+=")  # section.key=value


def _split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """(videos, overrides) of predict's positional items: ``section.key=value`` is an override
    unless a file or folder of that name exists."""
    videos, overrides = [], []
    for item in items:
        is_override = _OVERRIDE.match(item) and not os.path.exists(item)
        (overrides if is_override else videos).append(item)
    return videos, overrides


def cmd_export(args) -> int:
    from videoglore.engine.export import CHECK_CLIPS, export_model

    result = export_model(args.checkpoint, args.format, args.out, args.config, args.overrides)
    print(f"wrote {result.path}" + (f" and {result.sidecar}" if result.sidecar else ""))
    print(
        f"logits vs the checkpoint's model on {CHECK_CLIPS} random clip(s): max |diff| "
        f"{result.max_abs_diff:.2e} = {result.relative_diff:.2e} of max |logit| "
        f"{result.logit_scale:.3g}"
    )
    return 0


def cmd_demo(args) -> int:
    from videoglore.config import shipped_config
    from videoglore.demo import run_demo

    config = args.config or shipped_config("demo.yaml")
    metrics = run_demo(config, args.out, args.overrides, args.videos_per_class)
    print(_format_metrics(metrics))
    return 0


def cmd_flops(args) -> int:
    from videoglore.models import MODELS
    from videoglore.models.flops import flops_table, format_flops_table

    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        shown = ", ".join(bounded_repr(name, 60).strip("'") for name in unknown)
        raise ConfigError(f"unknown model {shown}; choose one of: {', '.join(MODELS)}")
    print(format_flops_table(flops_table(args.models or None)))
    return 0


def cmd_download(args) -> int:
    from videoglore import zoo

    if not args.names:
        for name, entry in zoo.ZOO.items():
            where = "cached" if zoo.cached_path(name).is_file() else (entry.url or entry.page)
            print(f"zoo:{name:18} {entry.kind:10} {entry.net:10} {where}")
        print(f"cache: {zoo.cache_dir()}")
        return 0
    names = [name.removeprefix(zoo.PREFIX) for name in args.names]
    for name in names:  # every name checked before the first download
        zoo.lookup(name)
    for name in names:
        print(f"zoo:{name}: {zoo.fetch(name, progress=True)}")
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
