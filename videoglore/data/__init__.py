"""Prepared lists → decoded, sampled, transformed clips → the model's input.

``sampling`` (frame indices) → ``video`` (decoding) → ``transforms`` + ``pixels`` (crop, resize,
convert only the kept pixels; uint8 RGB or ``yuv420`` boxes) → ``dataset`` → ``loader``
(samplers, DataLoader) → ``model_input`` on the device (YUV→RGB if needed, normalise).

The names below are imported from their modules on first use, so that ``sampling``, ``video``,
``pixels`` and the view builders of ``transforms`` can be imported without torch (prediction
with an exported ONNX model runs without it: ``videoglore.engine.onnx_predict``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {  # name → module of this package that defines it
    "ShardSampler": "loader",
    "TrainSampler": "loader",
    "VideoClipDataset": "dataset",
    "YuvClips": "yuv420",
    "build_dataset": "loader",
    "build_loader": "loader",
    "collate_test": "dataset",
    "model_input": "transforms",
    "normalize": "transforms",
    "sample_test_clips": "sampling",
    "sample_train_clip": "sampling",
    "seed_worker": "loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
