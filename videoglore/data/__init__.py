"""Prepared lists → decoded, sampled, transformed clips.

``lists`` (list files) → ``video`` (decoding) → ``sampling`` (frame indices) → ``transforms``
(uint8 crops; ``normalize`` runs on the device) → ``dataset`` → ``loader`` (samplers, DataLoader).
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
from videoglore.data.transforms import normalize

__all__ = [
    "ShardSampler",
    "TrainSampler",
    "VideoClipDataset",
    "build_dataset",
    "build_loader",
    "collate_test",
    "normalize",
    "sample_test_clips",
    "sample_train_clip",
    "seed_worker",
]
