"""Experiment configuration: YAML file → typed dataclasses, one per section.

A config file has the sections ``data``, ``model``, ``train``, ``test``, ``runtime`` and
``output``; every key is optional and falls back to the default written here. Unknown keys and
values of the wrong type fail at load time with the file, the dotted key and the closest valid
key named. Command-line overrides use dotted keys (``train.epochs=3``) and are checked the same
way.

Values are checked when the config loads (``config_check``), declared beside each field:

* enumerations are ``Literal[...]`` types (a wrong value gets "did you mean");
* ranges are ``Annotated[type, "RULE", ...]`` with RULEs like ``">= 1"``, ``"<= 1024"`` or
  ``">= 0, < 1"`` (comma = and), e.g. ``num_frames: Annotated[int, ">= 1", "<= 1024"] = 8``.
  Every size has an upper bound, generous but finite, so that a typo (``model.width=100000``)
  fails here instead of in the allocator; no float setting takes ``inf`` or ``nan``;
* rules between fields are a section's ``check()`` method, which yields ``(key, what is wrong)``
  pairs (``Config.check`` sees all sections; it also checks ``zoo:`` names, ``videoglore.zoo``).

Each failure is one ``ConfigError`` line: ``FILE: section.key must be >= 1, got 0``. The YAML
itself is read by ``config_yaml`` (no anchors or aliases, no key given twice).

The defaults are the Kinetics-400 recipe of the released GloRe code (8×8 clips, 224² crops); the
files in ``configs/`` spell out every value they rely on so that each can be read alone.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from data_prep.errors import bounded_repr
from data_prep.files import atomic_write_text, read_utf8
from videoglore import zoo
from videoglore.config_check import build_section, key_text
from videoglore.config_yaml import parse_yaml
from videoglore.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_VIDEO_VIEW_GIB = 2  # uint8 pixels of one test video's views (10 x 3 x 8 x 224²: 0.03 GiB)

# Upper bounds of sizes: far above any recipe, low enough that a typo fails at load.
Frames = Annotated[int, ">= 1", "<= 1024"]  # 1024 frames of 224² are 154 MB per uint8 clip
Pixels = Annotated[int, ">= 1", "<= 4096"]  # a 4K video's short side is 2160


@dataclass
class DataConfig:
    """Where the prepared lists are and how clips are sampled and transformed (paper §4.1)."""

    root: str = ""  # videos are found at root / path-in-list; "" = the list file's folder
    train_list: str = ""  # prepared train.csv (data_prep output)
    val_list: str = ""  # prepared val.csv
    classes: str = ""  # classes.json; "" = classes.json beside the train list
    num_frames: Frames = 8  # T: frames per clip (released: 8, MF-Net 16)
    # τ: stride between sampled frames; 1000 = 33 s at 30 fps between two frames
    frame_interval: Annotated[int, ">= 1", "<= 1000"] = 8
    train_scale: list[Pixels] = field(default_factory=lambda: [256, 320])  # short-side jitter
    crop_size: Annotated[int, ">= 1", "<= 2048"] = 224
    test_scale: Pixels = 256  # short side before test crops
    flip: bool = True
    normalization: Literal["official", "imagenet"] = "official"  # released code's or ImageNet's
    num_workers: Annotated[int, ">= 0", "<= 256"] = 4  # loader processes per GPU (<= cores)
    prefetch_factor: Annotated[int, ">= 1", "<= 64"] = 2
    # Frame reader: "pyav" (decodes from the keyframe before each needed frame, converts only
    # the needed frames; ~1.6-2x decord's clips/s per core on prepared videos) or "decord".
    reader: Literal["pyav", "decord"] = "pyav"
    decode_output: Literal["rgb", "yuv420"] = "rgb"  # yuv420: crop boxes as YUV, device → RGB

    def check(self) -> Iterator[tuple[str, str]]:
        if len(self.train_scale) != 2 or not 1 <= self.train_scale[0] <= self.train_scale[1]:
            yield (
                "train_scale",
                f"must be [low, high] with 1 <= low <= high, got {bounded_repr(self.train_scale)}",
            )
            return
        smallest = min(self.train_scale[0], self.test_scale)
        if self.crop_size > smallest:
            yield (
                "crop_size",
                f"{self.crop_size} is larger than the smallest scale {smallest} "
                f"(data.train_scale[0] {self.train_scale[0]}, data.test_scale {self.test_scale})",
            )


@dataclass
class ModelConfig:
    """Which network to build; see ``videoglore.models.MODELS``."""

    arch: Literal["resnet", "mfnet"] = "resnet"
    depth: Literal[50, 101] = 50  # ResNet depth (ignored by mfnet)
    glore: bool = True  # insert GloRe units at the paper's positions
    num_classes: Annotated[int, ">= 1", "<= 100000"] = 400  # ImageNet-21k has 21,841
    # channel multiplier; < 1: small nets for tests, demo. 4: 16x the parameters (R101: ~0.9 G)
    width: Annotated[float, "> 0", "<= 4"] = 1.0
    dropout: Annotated[float, ">= 0, < 1"] = 0.5  # before the classifier, as in the released code
    glore_normalize: bool = False  # scale GloRe node states by 1/L (released nets: off)
    # multiplier on each GloRe unit's K nodes and 2K states (released: 1)
    glore_nodes: Annotated[float, "> 0", "<= 16"] = 1.0
    # 2D ImageNet weights to inflate into the 3D net: a file or a released name
    # (zoo:resnet50-lite, zoo:resnet101-lite, zoo:mfnet2d_imagenet; videoglore/zoo.py)
    pretrained: str = ""
    # a 3D checkpoint to load (released GloRe/MF-Net or ours): a file or zoo:r50_glore_k400, ...
    weights: str = ""
    # glob patterns of tensor names left at their initialisation when ``weights`` lacks them or
    # has them in another shape (e.g. ["*_extra.*"]: GloRe units onto a net trained without)
    weights_skip: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Optimisation recipe; the defaults follow the released GloRe Kinetics training script.

    Source: facebookresearch/GloRe ``train_kinetics.py``, ``train_model.py``,
    ``train/lr_scheduler.py`` and ``dist.sh`` (8 hosts in ``Hosts`` × ``--batch-size 64`` per host
    = 512 clips per step, ``--lr-base 0.04``; lr steps at 24e4 × [45, 65, 85] clips, i.e. after
    45/65/85 passes over the ~240k Kinetics-400 training videos; factor 0.1; SGD momentum 0.9
    Nesterov; weight decay 1e-4 except on biases; linear warmup from lr/10 over 1500 iterations).
    """

    # official: no end (end-epoch 10000); we stop 10 epochs after the last step
    epochs: Annotated[int, ">= 0"] = 95
    # clips per GPU (per process); official 64 per host. 4096 clips of 8x224² are 3.7 GB
    batch_size: Annotated[int, ">= 1", "<= 4096"] = 8
    lr: Annotated[float, "> 0"] = 0.04  # learning rate at ``lr_batch`` clips; scaled linearly
    # global batch the official lr belongs to (8 × 64)
    lr_batch: Annotated[int, ">= 1", "<= 1048576"] = 512
    momentum: Annotated[float, ">= 0"] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, ">= 0"] = 1e-4  # never on biases (official: bn weights get it)
    weight_decay_norm: bool = True  # False: also exempt norm-layer weights
    # Layer-wise lr factors {glob pattern on the parameter name: factor}; the first matching
    # pattern wins, unmatched parameters get 1. Released (train_model.py, from ImageNet):
    # {"*conv_m2*": 0.5}; its fine-tuning: {"classifier.*": 1.0, "*": 0.5}. {} = one rate.
    lr_mult: dict[str, Annotated[float, ">= 0"]] = field(default_factory=dict)
    # official: 1500 iterations × 512 clips ≈ 3.2 Kinetics epochs
    warmup_epochs: Annotated[float, ">= 0"] = 3.2
    warmup_factor: Annotated[float, "> 0, <= 1"] = 0.1  # warmup starts at lr × this (lr/10)
    schedule: Literal["step", "cosine"] = "step"
    lr_steps: list[float] = field(default_factory=lambda: [45.0, 65.0, 85.0])  # epochs (step)
    lr_factor: Annotated[float, "> 0"] = 0.1
    # Precise BN (engine/precise_bn.py; released train/model.py, on in train_kinetics.py): N extra
    # steps after each epoch, the first 80 % training the precise_bn_update parameters, the rest
    # forward only so that the BN running statistics settle. 0 = off; released: 500.
    precise_bn: Annotated[int, ">= 0", "<= 100000"] = 0
    precise_bn_update: Literal["released", "norm", "none"] = "released"
    precise_bn_average: Literal["ema", "exact"] = "ema"  # released: BN's moving average
    label_smoothing: Annotated[float, ">= 0, < 1"] = 0.0
    clip_grad: Annotated[float, ">= 0"] = 0.0  # max gradient norm; 0 = off
    sync_bn: bool = False  # SyncBatchNorm under DDP
    seed: Annotated[int, ">= 0, < 2147483648"] = 0  # + rank seeds numpy, which takes < 2^32
    deterministic: bool = False  # deterministic kernels (for exact resume checks)
    val_every: Annotated[int, ">= 0"] = 1  # epochs between single-clip validations; 0 = never
    keep_last: Annotated[int, ">= 0"] = 3  # checkpoints kept besides the best
    # When a run has checkpoints and none can be read, training refuses to start; true starts
    # over from epoch 0 instead (the files are kept in checkpoints/unreadable/).
    start_over_if_unreadable: bool = False
    # extra mid-epoch checkpoints every N iterations; 0 = epoch ends only
    ckpt_every_iters: Annotated[int, ">= 0"] = 0
    log_every: Annotated[int, ">= 1"] = 10  # iterations between log lines

    def check(self) -> Iterator[tuple[str, str]]:
        steps = self.lr_steps
        if self.schedule == "step" and (steps != sorted(steps) or any(s < 0 for s in steps)):
            yield "lr_steps", f"must be increasing epochs >= 0, got {bounded_repr(steps)}"


@dataclass
class TestConfig:
    """Multi-view testing: K temporal clips × C spatial crops per video, scores averaged."""

    num_clips: Annotated[int, ">= 1", "<= 1000"] = 10
    num_crops: Literal[1, 3, 5] = 3  # 1 (centre), 3 (covering the long side), 5 (corners+centre)
    aggregate: Literal["softmax", "logits"] = "softmax"  # average softmax scores or raw logits
    # videos per batch (each num_clips × num_crops views)
    batch_size: Annotated[int, ">= 1", "<= 1024"] = 4
    save_scores: bool = False  # write per-video scores (scores.npy) for ensembling
    # "" = best (else last) checkpoint of output.dir; or a file, or zoo:r50_glore_k400, ...
    checkpoint: str = ""
    # views of several videos go through one forward; chunked
    max_views_per_forward: Annotated[int, ">= 1", "<= 10000"] = 120
    # Where the K clips go (also the single validation clip): "uniform" (ours: centred in K
    # equal parts) or "released" (GloRe data/video_sampler.py EvenlySampling, K+1 equal gaps)
    sampling: Literal["uniform", "released"] = "uniform"


@dataclass
class RuntimeConfig:
    """Where and how the network runs; ``train``, ``test`` and ``predict`` all read this section.

    The fast path (engine/forward.py): "auto" = on for CUDA, off on CPU; true/false force it.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 autocast on CUDA only
    channels_last: Literal["auto", True, False] = "auto"  # channels_last_3d (train and test)
    compile: Literal["auto", True, False] = "auto"  # torch.compile the model (train)
    # torch intra-op threads of the main process (loader workers always use one); 0 = torch's
    # default (one per core). On a shared CPU machine, set it to the cores that are yours.
    threads: Annotated[int, ">= 0", "<= 1024"] = 0


@dataclass
class OutputConfig:
    dir: str = "runs/default"  # run directory: config, checkpoints, logs, metrics


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def check(self) -> Iterator[tuple[str, str]]:
        # The tester holds one video's views as uint8 before they go to the device in chunks:
        # a huge clip count must fail here, not as a failed allocation after loading the model.
        t, crop, views = self.data.num_frames, self.data.crop_size, self.test.num_clips
        gib = views * self.test.num_crops * t * crop * crop * 3 / 2**30
        if gib > MAX_VIDEO_VIEW_GIB:
            yield (
                "test.num_clips",
                f"{views} x test.num_crops {self.test.num_crops} views of {t}x{crop}x{crop} "
                f"frames are {gib:.1f} GiB of uint8 pixels per video (limit "
                f"{MAX_VIDEO_VIEW_GIB} GiB); lower test.num_clips, test.num_crops, "
                "data.num_frames or data.crop_size",
            )
        yield from _zoo_problems(self)


def _zoo_problems(cfg: Config) -> Iterator[tuple[str, str]]:
    """``zoo:`` names that are unknown, of the wrong kind, or for another net than the model's
    (arch and depth; whether its GloRe units fit is checked with the keys when it loads)."""
    net = f"r{cfg.model.depth}" if cfg.model.arch == "resnet" else cfg.model.arch
    settings = [
        ("model.pretrained", "pretrained", cfg.model.pretrained),
        ("model.weights", "weights", cfg.model.weights),
        ("test.checkpoint", "weights", cfg.test.checkpoint),
    ]
    for key, kind, value in settings:
        if not zoo.is_zoo(value):
            continue
        try:
            entry = zoo.lookup(value)
        except ConfigError as exc:
            yield key, str(exc)
            continue
        if entry.kind != kind:
            what = "2D ImageNet weights" if entry.kind == "pretrained" else "a 3D video net"
            yield key, f"{value} holds {what}; {key} takes {_zoo_names(kind)}"
        elif entry.net.removesuffix("_glore") != net:
            model = f"{net} (model.arch {cfg.model.arch}, model.depth {cfg.model.depth})"
            fitting = _zoo_names(kind, net) or "none released"
            problem = f"{value} holds a {entry.net} net but the model is {model}"
            yield key, f"{problem}; {key} for it: {fitting}"


def _zoo_names(kind: str, net: str = "") -> str:
    """The zoo names of ``kind`` (for the net family ``net``, e.g. "r50", when given)."""
    return ", ".join(
        f"{zoo.PREFIX}{name}"
        for name, entry in zoo.ZOO.items()
        if entry.kind == kind and net in ("", entry.net.removesuffix("_glore"))
    )


def shipped_config(name: str) -> Path:
    """The path of a config that ships with videoglore, e.g. ``shipped_config("demo.yaml")``.

    ``configs/`` at the top of the checkout is the one copy; a wheel installs it as the package
    ``videoglore.configs`` (``package-dir`` in pyproject.toml). Running from a checkout (plain or
    editable install), the checkout's file is used; otherwise the installed one.
    """
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs").is_dir():
        return checkout / "configs" / name
    return Path(str(importlib.resources.files("videoglore.configs").joinpath(name)))


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        raw = parse_yaml(_read_text(Path(path)), source) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return config_with_overrides(raw, overrides, source)


def config_with_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], source: str
) -> Config:
    """``config_from_dict`` of ``raw`` (from ``source``) with the dotted ``overrides`` set. An
    error that only the overrides cause names the command line, not ``source``."""
    merged = apply_overrides(copy.deepcopy(raw), overrides)
    try:
        return config_from_dict(merged, source)
    except ConfigError:
        if not overrides or not _valid(raw, source):
            raise
        return config_from_dict(merged, "command line")  # raises again, naming the command line


def _valid(raw: dict[str, Any], source: str) -> bool:
    try:
        config_from_dict(raw, source)
    except ConfigError:
        return False
    return True


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``raw`` (nested plain data, changed in place) with the dotted overrides set.

    Raises:
        ConfigError: a key given twice (the command line's counterpart of a repeated YAML key).
    """
    given: dict[str, str] = {}
    for item in overrides:
        key, value = _parse_override(item)
        if key in given:
            raise ConfigError(
                f"command line: {key_text(key)} is given twice ({bounded_repr(given[key], 60)}, "
                f"{bounded_repr(item, 60)}); keep one"
            )
        given[key] = item
        _set_dotted(raw, key, value)
    return raw


def override_keys(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The dotted keys that command-line overrides set (``["train.epochs"]`` for
    ``["train.epochs=3"]``): these win over the settings a checkpoint carries."""
    return [_parse_override(item)[0] for item in overrides]


def _read_text(path: Path) -> str:
    """The UTF-8 text of a config file (``data_prep.files.read_utf8``: a byte-order mark is
    dropped, a bad byte is named), or a ConfigError that says what is wrong with the file."""
    try:
        return read_utf8(path)
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a folder, not a YAML config file; pass the .yaml file"
        ) from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except DataError as exc:  # not UTF-8: the message names the byte, its offset and line
        raise ConfigError(str(exc)) from None


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a checked ``Config`` from nested plain data (as in YAML files and checkpoints)."""
    return build_section(Config, _moved_to_runtime(raw, source), source, prefix="")


# train.* keys that moved to the runtime section (checkpoints and configs written before
# 2026-12 have them under train): read where they are, into runtime.
MOVED_TO_RUNTIME = ("device", "amp", "channels_last", "compile")


def _moved_to_runtime(raw: Any, source: str) -> Any:
    train = raw.get("train") if isinstance(raw, dict) else None
    if not isinstance(train, dict) or not any(k in train for k in MOVED_TO_RUNTIME):
        return raw
    runtime = raw.get("runtime") or {}
    if not isinstance(runtime, dict):
        return raw  # _build names the malformed section
    moved = {k: train[k] for k in MOVED_TO_RUNTIME if k in train}
    log.info(
        "%s: %s read as %s (these keys moved to the runtime section)",
        source,
        ", ".join(f"train.{k}" for k in moved),
        ", ".join(f"runtime.{k}" for k in moved),
    )
    kept = {k: v for k, v in train.items() if k not in moved}
    return {**raw, "train": kept, "runtime": {**moved, **runtime}}


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically: temp file, then rename)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def _parse_override(item: str) -> tuple[str, Any]:
    """(dotted key, value) of ``section.key=value``; the value is read as YAML (a syntax error
    leaves it the plain string, e.g. ``data.root=C:/a: b``)."""
    key, sep, text = item.partition("=")
    shown = bounded_repr(item, 60)
    if not sep or not key.strip():
        raise ConfigError(f"override {shown}: expected section.key=value, e.g. train.epochs=3")
    value = parse_yaml(text, f"override {shown}", lenient=True) if text.strip() else ""
    return key.strip(), value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"override {bounded_repr(key, 60)}: {bounded_repr(part, 60)} is a value, not a "
                "section"
            )
        node = child
    node[parts[-1]] = value
