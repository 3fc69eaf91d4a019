"""Experiment configuration: YAML file → typed dataclasses, one per section.

A config file has the sections ``data``, ``model``, ``train``, ``test`` and ``output``; every key is
optional and falls back to the default written here. Unknown keys and values of the wrong type fail
at load time with the file, the dotted key and the closest valid key named. Command-line overrides
use dotted keys (``train.epochs=3``) and are checked the same way.

The defaults are the Kinetics-400 recipe of the released GloRe code (8×8 clips, 224² crops); the
files in ``configs/`` spell out every value they rely on so that each can be read alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from videoglore.errors import ConfigError


@dataclass
class DataConfig:
    """Where the prepared lists are and how clips are sampled and transformed (paper §4.1)."""

    root: str = ""  # videos are found at root / path-in-list; "" = the list file's folder
    train_list: str = ""  # prepared train.csv (data_prep output)
    val_list: str = ""  # prepared val.csv
    classes: str = ""  # classes.json; "" = classes.json beside the train list
    num_frames: int = 8  # T: frames per clip
    frame_interval: int = 8  # τ: stride between sampled frames
    train_scale: list[int] = field(default_factory=lambda: [256, 320])  # short-side jitter range
    crop_size: int = 224
    test_scale: int = 256  # short side before test crops
    flip: bool = True
    normalization: str = "official"  # "official" (released code) or "imagenet"
    num_workers: int = 4  # loader processes per GPU
    prefetch_factor: int = 2
    # Frame reader: "pyav" (decodes from the keyframe before each needed frame, converts only
    # the needed frames; ~1.6-2x decord's clips/s per core on prepared videos) or "decord".
    reader: str = "pyav"


@dataclass
class ModelConfig:
    """Which network to build; see ``videoglore.models.MODELS``."""

    arch: str = "resnet"  # "resnet" or "mfnet"
    depth: int = 50  # ResNet depth: 50 or 101 (ignored by mfnet)
    glore: bool = True  # insert GloRe units at the paper's positions
    num_classes: int = 400
    width: float = 1.0  # channel multiplier; < 1 gives small nets for tests and the demo
    dropout: float = 0.5  # before the classifier, as in the released code
    glore_normalize: bool = False  # scale GloRe node states by 1/L (released nets: off)
    glore_nodes: float = 1.0  # multiplier on each GloRe unit's K nodes and 2K states (released: 1)
    pretrained: str = ""  # local 2D ImageNet checkpoint to inflate into the 3D net
    weights: str = ""  # local 3D checkpoint (released GloRe/MF-Net or ours) to load


@dataclass
class TrainConfig:
    """Optimisation recipe; the defaults follow the released GloRe Kinetics training script.

    Source: facebookresearch/GloRe ``train_kinetics.py``, ``train_model.py``,
    ``train/lr_scheduler.py`` and ``dist.sh`` (8 hosts in ``Hosts`` × ``--batch-size 64`` per host
    = 512 clips per step, ``--lr-base 0.04``; lr steps at 24e4 × [45, 65, 85] clips, i.e. after
    45/65/85 passes over the ~240k Kinetics-400 training videos; factor 0.1; SGD momentum 0.9
    Nesterov; weight decay 1e-4 except on biases; linear warmup from lr/10 over 1500 iterations).
    """

    epochs: int = 95  # official: no end (end-epoch 10000); we stop 10 epochs after the last step
    batch_size: int = 8  # clips per GPU (per process); official 64 per 8-GPU host
    lr: float = 0.04  # learning rate at ``lr_batch`` clips (official dist.sh); scaled linearly
    lr_batch: int = 512  # global batch the official lr belongs to (8 hosts × 64)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4  # never applied to biases (official: bn weights do get it)
    weight_decay_norm: bool = True  # False: also exempt norm-layer weights
    # Layer-wise lr factors {glob pattern on the parameter name: factor}; the first matching
    # pattern wins, unmatched parameters get 1. Released (train_model.py, from ImageNet):
    # {"*conv_m2*": 0.5}; its fine-tuning: {"classifier.*": 1.0, "*": 0.5}. {} = one rate.
    lr_mult: dict[str, float] = field(default_factory=dict)
    warmup_epochs: float = 3.2  # official: 1500 iterations × 512 clips ≈ 3.2 Kinetics epochs
    warmup_factor: float = 0.1  # warmup starts at lr × this (official: lr/10)
    schedule: str = "step"  # "step" or "cosine"
    lr_steps: list[float] = field(default_factory=lambda: [45.0, 65.0, 85.0])  # epochs (step)
    lr_factor: float = 0.1
    # Precise BN (engine/precise_bn.py; released train/model.py, on in train_kinetics.py): N extra
    # steps after each epoch, the first 80 % training the precise_bn_update parameters, the rest
    # forward only so that the BN running statistics settle. 0 = off; released: 500.
    precise_bn: int = 0
    precise_bn_update: Literal["released", "norm", "none"] = "released"
    precise_bn_average: Literal["ema", "exact"] = "ema"  # released: BN's moving average
    label_smoothing: float = 0.0
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    amp: str = "auto"  # "auto" (bf16 on CUDA, off on CPU), "bf16", "fp16", "off"
    channels_last: bool = False  # channels_last_3d memory format
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP
    seed: int = 0
    deterministic: bool = False  # deterministic kernels (for exact resume checks)
    val_every: int = 1  # epochs between single-clip validations; 0 = never
    keep_last: int = 3  # checkpoints kept besides the best
    ckpt_every_iters: int = 0  # extra mid-epoch checkpoints every N iterations; 0 = epoch ends only
    log_every: int = 10  # iterations between log lines
    device: str = "auto"  # "auto", "cpu", "cuda"


@dataclass
class TestConfig:
    """Multi-view testing: K temporal clips × C spatial crops per video, scores averaged."""

    num_clips: int = 10
    num_crops: int = 3  # 1 (centre), 3 (covering the long side) or 5 (corners + centre)
    aggregate: str = "softmax"  # average "softmax" scores or raw "logits"
    batch_size: int = 4  # videos per batch (each with num_clips × num_crops views)
    save_scores: bool = False  # write per-video scores (scores.npy) for ensembling
    checkpoint: str = ""  # "" = best (else last) checkpoint of output.dir
    max_views_per_forward: int = 120  # views of several videos go through one forward; chunked
    # Where the K clips go (also the single validation clip): "uniform" (ours: centred in K
    # equal parts) or "released" (GloRe data/video_sampler.py EvenlySampling, K+1 equal gaps)
    sampling: Literal["uniform", "released"] = "uniform"


@dataclass
class OutputConfig:
    dir: str = "runs/default"  # run directory: config, checkpoints, logs, metrics


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return config_from_dict(raw, source)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Build a checked ``Config`` from nested plain data (as in YAML files and checkpoints)."""
    return _build(Config, raw, source, prefix="")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML (atomically: temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)


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
    hints = typing.get_type_hints(cls)
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
    return cls(**values)


def _check(hint: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, source, prefix=key + ".")
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
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
