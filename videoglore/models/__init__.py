"""Video networks: 3D ResNet-50/101 and MF-Net, each with and without GloRe units.

``registry.MODELS`` maps a name to its factory; ``build_model`` takes a name or a ``ModelConfig``;
``loading.load_model`` is the one way a net gets the weights of a file (train, test, predict,
export).
Every model is a ``VideoNet`` (``videonet.py``): it takes float clips (N, 3, T, H, W) and has
``forward``, ``forward_features`` (the last feature map), ``forward_head`` (pool → dropout →
classifier), ``num_classes``, ``num_features`` and ``default_clip`` = (T, H, W) of its released
training clips. Architecture files (``resnet3d.py``, ``mfnet3d.py``) hold a block and a table.
"""

from videoglore.models.glore import GloRe, GloRe1d, GloRe2d, GloRe3d
from videoglore.models.loading import WeightsSource, load_model
from videoglore.models.registry import MODELS, build_model, default_clip, model_name
from videoglore.models.videonet import Architecture, StageSpec, VideoNet, build_video_net
from videoglore.models.weights import (
    LoadReport,
    ModelFile,
    inflate_2d_weights,
    load_weights,
    read_model_file,
)

__all__ = [
    "MODELS",
    "Architecture",
    "GloRe",
    "GloRe1d",
    "GloRe2d",
    "GloRe3d",
    "LoadReport",
    "ModelFile",
    "StageSpec",
    "VideoNet",
    "WeightsSource",
    "build_model",
    "build_video_net",
    "default_clip",
    "inflate_2d_weights",
    "load_model",
    "load_weights",
    "model_name",
    "read_model_file",
]
