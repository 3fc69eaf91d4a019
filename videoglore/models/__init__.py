"""Video networks: 3D ResNet-50/101 and MF-Net, each with and without GloRe units.

``MODELS`` maps a name to its constructor; ``build_model`` takes a name or a ``ModelConfig``.
Every model takes float clips (N, 3, T, H, W) and has ``forward``, ``forward_features`` (the last
feature map), ``forward_head`` (pool → dropout → classifier), ``num_classes``, ``num_features`` and
``default_clip`` = (T, H, W) of its released training clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from torch import nn

from videoglore.config import ModelConfig
from videoglore.errors import ConfigError
from videoglore.models.glore import GloRe, GloRe1d, GloRe2d, GloRe3d
from videoglore.models.mfnet3d import MFNet3d
from videoglore.models.resnet3d import ResNet3d
from videoglore.models.weights import LoadReport, inflate_2d_weights, load_weights

log = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., nn.Module]] = {
    "r50": partial(ResNet3d, depth=50, glore=False),
    "r50_glore": partial(ResNet3d, depth=50, glore=True),
    "r101": partial(ResNet3d, depth=101, glore=False),
    "r101_glore": partial(ResNet3d, depth=101, glore=True),
    "mfnet": partial(MFNet3d, glore=False),
    "mfnet_glore": partial(MFNet3d, glore=True),
}


def model_name(cfg: ModelConfig) -> str:
    """The ``MODELS`` name a ``ModelConfig`` (arch, depth, glore) stands for."""
    if cfg.arch == "resnet":
        if cfg.depth not in (50, 101):
            raise ConfigError(f"model.depth must be 50 or 101 for arch resnet, got {cfg.depth}")
        base = f"r{cfg.depth}"
    elif cfg.arch == "mfnet":
        base = "mfnet"
    else:
        raise ConfigError(f"model.arch must be 'resnet' or 'mfnet', got {cfg.arch!r}")
    return f"{base}_glore" if cfg.glore else base


def build_model(spec: str | ModelConfig, **overrides) -> nn.Module:
    """Build a model by name (``build_model("r50_glore", num_classes=10, width=0.125)``) or from
    a ``ModelConfig``; the latter also inflates ``pretrained`` and then loads ``weights``.

    Raises:
        ConfigError: unknown name or arch/depth.
        CheckpointError: a ``pretrained`` / ``weights`` file that is missing or does not fit.
    """
    cfg = spec if isinstance(spec, ModelConfig) else None
    name = model_name(cfg) if cfg is not None else spec
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    kwargs = {}
    if cfg is not None:
        kwargs = dict(
            num_classes=cfg.num_classes,
            width=cfg.width,
            dropout=cfg.dropout,
            normalize_glore=cfg.glore_normalize,
            glore_nodes=cfg.glore_nodes,
        )
    kwargs.update(overrides)
    model = MODELS[name](**kwargs)
    if cfg is not None and cfg.pretrained:
        inflate_2d_weights(model, cfg.pretrained)
    if cfg is not None and cfg.weights:
        load_weights(model, cfg.weights, strict=True)
    return model


__all__ = [
    "MODELS",
    "GloRe",
    "GloRe1d",
    "GloRe2d",
    "GloRe3d",
    "LoadReport",
    "MFNet3d",
    "ResNet3d",
    "build_model",
    "inflate_2d_weights",
    "load_weights",
    "model_name",
]
