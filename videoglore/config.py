"""Experiment configuration: YAML file → typed dataclasses, one per section.

A config file has the sections ``data``, ``model``, ``train``, ``test``, ``runtime`` and
``output``; every key is optional and falls back to the default written here. Unknown keys and
values of the wrong type fail at load time with the file, the dotted key and the closest valid
key named. Command-line overrides use dotted keys (``train.epochs=3``) and are checked the same
way.

Values are checked when the config loads, declared beside each field:

* enumerations are ``Literal[...]`` types (a wrong value gets "did you mean");
* ranges are ``Annotated[type, "RULE"]`` with RULE like ``">= 1"``, ``"> 0"`` or ``">= 0, < 1"``
  (comma = and), e.g. ``num_frames: Annotated[int, ">= 1"] = 8``;
* rules between fields are a section's ``check()`` method, which yields ``(key, what is wrong)``
  pairs (``Config.check`` sees all sections).

Each failure is one ``ConfigError`` line: ``FILE: section.key must be >= 1, got 0``.

The defaults are the Kinetics-400 recipe of the released GloRe code (8×8 clips, 224² crops); the
files in ``configs/`` spell out every value they rely on so that each can be read alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
import operator
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from data_prep.files import atomic_write_text, read_utf8
from videoglore.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_VIDEO_VIEW_GIB = 2  # uint8 pixels of one test video's views (10 x 3 x 8 x 224²: 0.03 GiB)


@dataclass
class DataConfig:
    """Where the prepared lists are and how clips are sampled and transformed (paper §4.1)."""

    root: str = ""  # videos are found at root / path-in-list; "" = the list file's folder
    train_list: str = ""  # prepared train.csv (data_prep output)
    val_list: str = ""  # prepared val.csv
    classes: str = ""  # classes.json; "" = classes.json beside the train list
    num_frames: Annotated[int, ">= 1"] = 8  # T: frames per clip
    frame_interval: Annotated[int, ">= 1"] = 8  # τ: stride between sampled frames
    train_scale: list[int] = field(default_factory=lambda: [256, 320])  # short-side jitter range
    crop_size: Annotated[int, ">= 1"] = 224
    test_scale: Annotated[int, ">= 1"] = 256  # short side before test crops
    flip: bool = True
    normalization: Literal["official", "imagenet"] = "official"  # released code's or ImageNet's
    num_workers: Annotated[int, ">= 0"] = 4  # loader processes per GPU
    prefetch_factor: Annotated[int, ">= 1"] = 2
    # Frame reader: "pyav" (decodes from the keyframe before each needed frame, converts only
    # the needed frames; ~1.6-2x decord's clips/s per core on prepared videos) or "decord".
    reader: Literal["pyav", "decord"] = "pyav"
    decode_output: Literal["rgb", "yuv420"] = "rgb"  # yuv420: crop boxes as YUV, device → RGB

    def check(self) -> Iterator[tuple[str, str]]:
        if len(self.train_scale) != 2 or not 1 <= self.train_scale[0] <= self.train_scale[1]:
            yield (
                "train_scale",
                f"must be [low, high] with 1 <= low <= high, got {self.train_scale}",
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
    num_classes: Annotated[int, ">= 1"] = 400
    width: Annotated[float, "> 0"] = 1.0  # channel multiplier; < 1: small nets for tests, demo
    dropout: Annotated[float, ">= 0, < 1"] = 0.5  # before the classifier, as in the released code
    glore_normalize: bool = False  # scale GloRe node states by 1/L (released nets: off)
    # multiplier on each GloRe unit's K nodes and 2K states (released: 1)
    glore_nodes: Annotated[float, "> 0"] = 1.0
    pretrained: str = ""  # local 2D ImageNet checkpoint to inflate into the 3D net
    weights: str = ""  # local 3D checkpoint (released GloRe/MF-Net or ours) to load
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
    batch_size: Annotated[int, ">= 1"] = 8  # clips per GPU (per process); official 64 per host
    lr: Annotated[float, "> 0"] = 0.04  # learning rate at ``lr_batch`` clips; scaled linearly
    lr_batch: Annotated[int, ">= 1"] = 512  # global batch the official lr belongs to (8 × 64)
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
    precise_bn: Annotated[int, ">= 0"] = 0
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
            yield "lr_steps", f"must be increasing epochs >= 0, got {steps}"


@dataclass
class TestConfig:
    """Multi-view testing: K temporal clips × C spatial crops per video, scores averaged."""

    num_clips: Annotated[int, ">= 1"] = 10
    num_crops: Literal[1, 3, 5] = 3  # 1 (centre), 3 (covering the long side), 5 (corners+centre)
    aggregate: Literal["softmax", "logits"] = "softmax"  # average softmax scores or raw logits
    batch_size: Annotated[int, ">= 1"] = 4  # videos per batch (each num_clips × num_crops views)
    save_scores: bool = False  # write per-video scores (scores.npy) for ensembling
    checkpoint: str = ""  # "" = best (else last) checkpoint of output.dir
    # views of several videos go through one forward; chunked
    max_views_per_forward: Annotated[int, ">= 1"] = 120
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
    threads: Annotated[int, ">= 0"] = 0


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
        try:
            raw = yaml.safe_load(_read_text(Path(path))) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    return config_from_dict(apply_overrides(raw, overrides), source)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``raw`` (nested plain data, changed in place) with the dotted overrides set."""
    for item in overrides:
        key, value = _parse_override(item)
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
    return _build(Config, _moved_to_runtime(raw, source), source, prefix="")


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
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.4)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            valid = ", ".join(names)
            raise ConfigError(
                f"{source}: unknown key {prefix}{key}{hint} (valid keys here: {valid})"
            )
        values[key] = _check(hints[key], value, source, f"{prefix}{key}")
    obj = cls(**values)
    for key, problem in obj.check() if hasattr(obj, "check") else ():
        raise ConfigError(f"{source}: {prefix}{key} {problem}")
    return obj


def _check(hint: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, source, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *rules = typing.get_args(hint)
        value = _check(base, value, source, key)
        for rule in rules:
            if not _obeys(value, rule):
                raise ConfigError(
                    f"{source}: {key} must be {rule.replace(',', ' and')}, got {value!r}"
                )
        return value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value is False and "off" in choices:  # YAML 1.1 reads a bare off as false
            value = "off"
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.4)
        hint_text = f"; did you mean {close[0]}?" if close else ""
        valid = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{source}: {key} must be one of {valid}, got {value!r}{hint_text}")
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_check(item_hint, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return {
            _check(key_hint, k, source, key): _check(value_hint, v, source, f"{key}.{k}")
            for k, v in value.items()
        }
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, source, key)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: {key} has the wrong type: {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and value is None:
        return ""
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"{source}: {key} must be {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _obeys(value: float, rule: str) -> bool:
    """Whether ``value`` obeys a range rule such as ``">= 0, < 1"`` (comma = and)."""
    for part in rule.split(","):
        op, bound = part.split()
        if not _COMPARE[op](value, float(bound)):
            return False
    return True
