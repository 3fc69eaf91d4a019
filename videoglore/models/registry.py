"""Model names → factories (``MODELS``: each architecture of ``ARCHITECTURES`` without and with
GloRe units), and ``build_model`` from a name or a ``ModelConfig`` (a fresh net; files are
loaded by ``loading.load_model``).

Each factory takes the keyword arguments of ``videonet.build_video_net`` (``num_classes``,
``width``, ``dropout``, ``normalize_glore``, ``glore_nodes``) and returns a ``VideoNet``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from videoglore.config import ModelConfig
from videoglore.errors import ConfigError, explain_out_of_memory
from videoglore.models.layers import Triple
from videoglore.models.mfnet3d import MFNET
from videoglore.models.resnet3d import resnet_architecture
from videoglore.models.videonet import Architecture, VideoNet, build_video_net

ARCHITECTURES: dict[str, Architecture] = {
    "r50": resnet_architecture(50),
    "r101": resnet_architecture(101),
    "mfnet": MFNET,
}

# every architecture without and with GloRe units: r50, r50_glore, r101, ...
MODELS: dict[str, Callable[..., VideoNet]] = {
    f"{arch}{suffix}": partial(build_video_net, ARCHITECTURES[arch], glore=glore)
    for arch in ARCHITECTURES
    for suffix, glore in (("", False), ("_glore", True))
}


def default_clip(name: str) -> Triple:
    """(T, H, W) of the released training clips of model ``name``, without building it."""
    _factory(name)  # ConfigError for an unknown name
    return ARCHITECTURES[name.removesuffix("_glore")].default_clip


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


def build_model(spec: str | ModelConfig, **overrides) -> VideoNet:
    """Build a freshly initialised model by name (``build_model("r50_glore", num_classes=10,
    width=0.125)``) or from a ``ModelConfig`` (whose ``pretrained`` / ``weights`` files are
    loaded by ``models.loading.load_model``, not here).

    Raises:
        ConfigError: unknown name or arch/depth.
        TrainingError: out of memory while building, naming the sizes to lower.
    """
    cfg = spec if isinstance(spec, ModelConfig) else None
    name = model_name(cfg) if cfg is not None else spec
    factory = _factory(name)
    kwargs = {}
    if cfg is not None:
        kwargs = dict(
            num_classes=cfg.num_classes,
            width=cfg.width,
            dropout=cfg.dropout,
            normalize_glore=cfg.glore_normalize,
            glore_nodes=cfg.glore_nodes,
        )
    settings = kwargs | overrides
    sizes = ", ".join(f"model.{k} {settings[k]}" for k in _SIZES if k in settings)
    doing = f"building the model {name}" + (f" ({sizes})" if sizes else "")
    with explain_out_of_memory(doing, "lower model.width, or free memory"):
        return factory(**settings)


_SIZES = ("width", "num_classes", "glore_nodes")  # what the out-of-memory message names


def _factory(name: str) -> partial:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]
