"""Prepared lists → decoded, sampled, transformed clips → the model's input.

``sampling`` (frame indices) → ``video`` (decoding) → ``transforms`` + ``pixels`` (crop, resize,
convert only the kept pixels; uint8 RGB or ``yuv420`` boxes) → ``dataset`` → ``loader``
(samplers, DataLoader) → ``model_input`` on the device (YUV→RGB if needed, normalise).
"""

from videoglore.data.dataset import VideoClipDataset, collate_test
from videoglore.data.loader import (
    ShardSampler,
    TrainSampler,
    build_dataset,
    build_loader,
    seed_worker,
)
from videoglore.data.sampling import sample_test_clips, sample_train_clip
from videoglore.data.transforms import model_input, normalize
from videoglore.data.yuv420 import YuvClips

__all__ = [
    "ShardSampler",
    "TrainSampler",
    "VideoClipDataset",
    "YuvClips",
    "build_dataset",
    "build_loader",
    "collate_test",
    "model_input",
    "normalize",
    "sample_test_clips",
    "sample_train_clip",
    "seed_worker",
]
