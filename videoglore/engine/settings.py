"""What `test` and `predict` take from a checkpoint and what from the user's config.

A checkpoint of ours carries the config it was trained with, so the net and the clips it was
trained on travel with it. The rule (``resolve``)::

    from the checkpoint   model.* (but pretrained, weights, weights_skip) and the clip protocol
                          data.num_frames, frame_interval, crop_size, test_scale, normalization
    from the command line a dotted override of one of those keys wins over the checkpoint
                          (the CLI passes the override keys down: ``config.override_keys``)
    from the user config  everything else: data paths (val_list, root, classes), reader and
                          workers, the test section (clips x crops, sampling), runtime, output

A config-file value that differs from the checkpoint's is not used; ``Settings.line`` says in one
line which keys came from the checkpoint, which values of the file were not used and which keys
the command line set, and ``Settings.record`` puts the same into metrics.json. A file without a
config (a released ``.pth``, a bare state dict) is tested with the config's model and protocol.
``data.train_scale`` (unused by testing) also comes from the checkpoint, so that the config's
crop-versus-scale check holds for the checkpoint's crop.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from videoglore.config import (
    Config,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    config_with_overrides,
)
from videoglore.models import ModelFile, model_name

PROTOCOL = ("num_frames", "frame_interval", "crop_size", "test_scale", "normalization")
# model keys that name files to start training from, never what a checkpoint holds
NOT_FROM_CHECKPOINT = ("pretrained", "weights", "weights_skip")
TEST_PROTOCOL = ("num_clips", "num_crops", "sampling", "aggregate")


@dataclass
class Settings:
    """Where the model and clip settings of a test or prediction came from."""

    checkpoint: str
    config_name: str  # the user's config file, for messages
    has_config: bool  # the checkpoint carries its config (ours)
    from_checkpoint: list[str] = field(default_factory=list)  # dotted keys
    not_used: dict[str, Any] = field(default_factory=dict)  # dotted key → the config's value
    from_command_line: dict[str, Any] = field(default_factory=dict)  # dotted key → value

    def line(self, cfg: Config) -> str:
        """One log line: what was used, from where."""
        what = describe(cfg)
        if not self.has_config:
            head = (
                f"{self.checkpoint} holds weights only: model and clip settings from "
                f"{self.config_name}: {what}"
            )
        else:
            head = f"{self.checkpoint}: model and clip settings from the checkpoint: {what}"
            if self.not_used:
                head += f"; not used from {self.config_name} (the checkpoint's differ): " + _pairs(
                    self.not_used
                )
        if self.from_command_line:
            head += "; from the command line: " + _pairs(self.from_command_line)
        return head

    def record(self, cfg: Config) -> dict:
        """The ``protocol``, ``model`` and ``settings`` entries of metrics.json."""
        model = dataclasses.asdict(cfg.model)
        for key in NOT_FROM_CHECKPOINT:
            model.pop(key)
        return {
            "protocol": {
                **{key: getattr(cfg.data, key) for key in PROTOCOL},
                **{key: getattr(cfg.test, key) for key in TEST_PROTOCOL},
            },
            "model": {"name": model_name(cfg.model), **model},
            "settings": {
                "from_checkpoint": self.from_checkpoint,
                "not_used_from_config": self.not_used,
                "from_command_line": sorted(self.from_command_line),
            },
        }


def describe(cfg: Config) -> str:
    """``r50_glore width 1.0, 400 classes; 8x8 clips at 224 px (test scale 256, official
    normalization)``."""
    m, d = cfg.model, cfg.data
    return (
        f"{model_name(m)} width {m.width}, {m.num_classes} classes; {d.num_frames}x"
        f"{d.frame_interval} clips at {d.crop_size} px (test scale {d.test_scale}, "
        f"{d.normalization} normalization)"
    )


def resolve(
    file: ModelFile, user: Config, explicit: list[str] | tuple[str, ...] = (), config_name: str = ""
) -> tuple[Config, Settings]:
    """The config to test ``file`` with (the rule of the module doc) and where each part came
    from. ``explicit``: the dotted keys the user set on the command line.

    Raises:
        ConfigError: the merged settings are invalid (naming the checkpoint and the config).
    """
    name = config_name or "the default config"
    merged = config_to_dict(user)
    settings = Settings(file.path, name, has_config=file.config is not None)
    taken = [("model", k) for k in _model_keys()] + [("data", k) for k in PROTOCOL]
    saved = _saved_config(file) if file.config is not None else None
    for section, key in taken:
        dotted = f"{section}.{key}"
        if _is_explicit(dotted, explicit):
            settings.from_command_line[dotted] = merged[section][key]
        elif saved is not None:
            value = saved[section][key]
            if merged[section][key] != value:
                settings.not_used[dotted] = merged[section][key]
            merged[section][key] = value
            settings.from_checkpoint.append(dotted)
    if saved is not None and not _is_explicit("data.train_scale", explicit):
        merged["data"]["train_scale"] = saved["data"]["train_scale"]
    merged["model"].update(pretrained="", weights="", weights_skip=[])  # the weights: the file
    cfg = config_from_dict(merged, source=f"{file.path} with {name}")
    return cfg, settings


def checkpoint_config(file: ModelFile, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config a checkpoint of ours was trained with, runtime reset to the defaults (this
    machine is not the one it trained on), then the command-line ``overrides``: what `predict`
    uses when no config file is given."""
    raw = _saved_config(file)
    raw["runtime"] = {}
    return config_with_overrides(raw, overrides, source=f"{file.path}:config")


def _saved_config(file: ModelFile) -> dict:
    # through the config class: older checkpoints' keys are read as today's (runtime section)
    saved = config_from_dict(copy.deepcopy(file.config), source=f"{file.path}:config")
    return config_to_dict(saved)


def _model_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelConfig) if f.name not in NOT_FROM_CHECKPOINT]


def _is_explicit(dotted: str, explicit: list[str] | tuple[str, ...]) -> bool:
    return any(dotted == key or dotted.startswith(key + ".") for key in explicit)


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={values[key]}" for key in sorted(values))
