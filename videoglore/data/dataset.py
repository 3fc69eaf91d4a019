"""Prepared list → uint8 clips: the dataset the loaders iterate.

    VideoRecord (path, label, num_frames, ...)
      │ video.read_clip (PyAV or decord, fresh per item): sample indices (sampling.py)
      │ decode only the needed frames, once each (sorted, unique)
      │ transforms.py: train / val / test views
      ▼
    train, val: (clip uint8 (3, T, S, S), label, index)
    test:       (views uint8 (K*C, 3, T, S, S), label, index)

Randomness: every random choice of a training item (clip start, scale, crop, flip, the
replacement of an unreadable video) comes from a generator seeded with (seed, epoch, index), not
from global RNG state. The same item of the same epoch is therefore the same clip in any worker,
with any number of workers, and after resuming in the middle of an epoch. The epoch reaches the
workers through the sampler (``TrainSampler`` yields ``(index, epoch)`` keys), so persistent
workers need no extra signalling.

Unreadable videos never crash a run and never get a wrong label:
  * train: logged once per process and replaced by another (deterministically drawn) item; the
    returned label and index are the replacement's;
  * val/test: the item is ``(None, label, index)``; ``collate_test`` drops it and reports the
    index so the tester can count it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from data_prep.lists import VideoRecord
from videoglore.data import sampling, transforms
from videoglore.data.video import READERS, read_clip
from videoglore.errors import ConfigError, DataError, VideoError

log = logging.getLogger(__name__)

MODES = ("train", "val", "test")
MAX_REPLACEMENTS = 20  # train: consecutive unreadable draws before giving up

_reported: set[str] = set()  # paths already logged as unreadable in this process


class VideoClipDataset(Dataset):
    """Clips of the videos in a prepared list (see the module docstring for the item formats).

    Args:
        records: the list's videos (``lists.read_video_list``).
        mode: "train" (random clip + jitter/crop/flip), "val" (centre clip, centre crop) or
            "test" (``num_clips`` × ``num_crops`` views).
        num_frames, frame_interval: T and τ of a clip (8×8 in the paper).
        seed: base seed of the (seed, epoch, index) generators of training items.
        reader: "pyav" or "decord" (``video.read_clip``; both return the same frames).
        test_sampling: where val/test clips go, a key of ``sampling.TEST_SAMPLERS``.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        mode: str,
        num_frames: int = 8,
        frame_interval: int = 8,
        crop_size: int = 224,
        train_scale: Sequence[int] = (256, 320),
        test_scale: int = 256,
        flip: bool = True,
        num_clips: int = 10,
        num_crops: int = 3,
        seed: int = 0,
        reader: str = "pyav",
        test_sampling: str = "uniform",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset mode must be one of {MODES}, got {mode!r}")
        if not records:
            raise DataError(f"{mode} list is empty: no videos to load")
        if num_crops not in transforms.CROP_COUNTS:
            raise ValueError(f"test.num_crops must be one of {transforms.CROP_COUNTS}")
        if reader not in READERS:
            raise ConfigError(f"data.reader must be one of {READERS}, got {reader!r}")
        if test_sampling not in sampling.TEST_SAMPLERS:
            rules = ", ".join(sampling.TEST_SAMPLERS)
            raise ValueError(f"test.sampling must be one of {rules}, got {test_sampling!r}")
        self.records = list(records)
        self.mode = mode
        self.num_frames = num_frames
        self.frame_interval = frame_interval
        self.crop_size = crop_size
        self.train_scale = tuple(train_scale)
        self.test_scale = test_scale
        self.flip = flip
        self.num_clips = num_clips if mode == "test" else 1
        self.num_crops = num_crops if mode == "test" else 1
        self.seed = seed
        self.reader = reader
        self.test_sampling = test_sampling
        self.epoch = 0  # used when a plain int index comes in (no TrainSampler)
        self._bad: set[int] = set()  # train: unreadable indices met by this process

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]):
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        index = int(index)
        if self.mode == "train":
            return self._train_item(index, int(epoch))
        record = self.records[index]
        try:
            views = self._eval_views(record)
        except VideoError as exc:
            _report(record, exc, "skipped")
            return None, record.label, index
        return views, record.label, index

    def item_rng(self, index: int, epoch: int) -> np.random.Generator:
        """The generator behind every random choice of training item ``index`` in ``epoch``."""
        return np.random.default_rng([self.seed, epoch, index])

    def read_clip_frames(self, record: VideoRecord, indices_for) -> np.ndarray:
        """Decode the frames chosen by ``indices_for(num_frames)`` (any int array shape).

        Returns uint8 (indices.size, H, W, 3) in the order of the flattened indices, through
        ``video.read_clip`` with this dataset's reader (nothing stays open between items).
        The benchmark overrides this with the reference loaders' PyAV decoding.
        """
        return read_clip(record.path, indices_for, self.reader)

    def _train_item(self, index: int, epoch: int):
        rng = self.item_rng(index, epoch)
        T, tau = self.num_frames, self.frame_interval
        for _ in range(MAX_REPLACEMENTS):
            record = self.records[index]
            if index in self._bad:  # known unreadable in this process: draw again, same as a miss
                index = int(rng.integers(len(self.records)))
                continue
            try:
                frames = self.read_clip_frames(
                    record, lambda n: sampling.sample_train_clip(n, T, tau, rng)
                )
            except VideoError as exc:
                _report(record, exc, "replaced by another video")
                self._bad.add(index)
                index = int(rng.integers(len(self.records)))
                continue
            clip = transforms.train_transform(
                frames, self.train_scale, self.crop_size, self.flip, rng
            )
            return clip, record.label, index  # (3, T, S, S)
        raise DataError(
            f"{MAX_REPLACEMENTS} unreadable videos in a row in the train list "
            f"(last: {self.records[index].path}); check the prepared list and the video files"
        )

    def _eval_views(self, record: VideoRecord) -> torch.Tensor:
        T, tau, K = self.num_frames, self.frame_interval, self.num_clips
        sample = sampling.TEST_SAMPLERS[self.test_sampling]  # val: K = 1 of the same rule
        frames = self.read_clip_frames(record, lambda n: sample(n, T, tau, K))
        views = transforms.test_transform(
            frames, K, self.test_scale, self.crop_size, self.num_crops
        )  # (K*C, 3, T, S, S)
        return views[0] if self.mode == "val" else views


def collate_test(items):
    """Batch val/test items, dropping unreadable videos.

    Returns ``(views, labels, indices, skipped)``: views uint8 (B, K*C, 3, T, S, S) for test or
    (B, 3, T, S, S) for val, labels int64 (B,), indices int64 (B,), ``skipped`` the dataset
    indices of the dropped items (list of int). When every item was dropped, views, labels and
    indices are empty tensors (check ``labels.numel()``).
    """
    kept = [item for item in items if item[0] is not None]
    skipped = [int(item[2]) for item in items if item[0] is None]
    if not kept:
        empty = torch.empty(0, dtype=torch.int64)
        return torch.empty(0, dtype=torch.uint8), empty, empty.clone(), skipped
    views = torch.stack([item[0] for item in kept])
    labels = torch.tensor([int(item[1]) for item in kept], dtype=torch.int64)
    indices = torch.tensor([int(item[2]) for item in kept], dtype=torch.int64)
    return views, labels, indices, skipped


def _report(record: VideoRecord, exc: Exception, what: str) -> None:
    if record.path in _reported:
        return
    _reported.add(record.path)
    log.warning("unreadable video (%s): %s", what, exc)
