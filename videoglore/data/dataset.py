"""Prepared list → uint8 clips: the dataset the loaders iterate.

    VideoList (data_prep.lists: flat arrays) ─ records[i] ─▶ VideoRecord (path, label, ...)
      │ sampling.py: frame indices of the clip(s)
      │ video.decode_clip (PyAV or decord, fresh per item): each needed frame decoded once
      │ transforms.TrainClip / EvalViews: crop, resize, convert only the kept pixels, in
      │   the video's upright orientation (the record's rotation)
      ▼
    train, val: (clip, label, index)     clip uint8 (3, T, S, S) or YuvClips
    test:       (views, label, index)    views uint8 (K*C, 3, T, S, S) or YuvClips

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

from data_prep.lists import VideoList, VideoRecord
from videoglore.data import sampling, transforms
from videoglore.data.video import decode_clip
from videoglore.data.yuv420 import YuvClips
from videoglore.errors import ConfigError, DataError, VideoError

log = logging.getLogger(__name__)

MODES = ("train", "val", "test")
MAX_REPLACEMENTS = 20  # train: consecutive unreadable draws before giving up

_reported: set[str] = set()  # paths already logged as unreadable in this process


class VideoClipDataset(Dataset):
    """Clips of the videos in a prepared list (see the module docstring for the item formats).

    Args:
        records: the list's videos (``lists.read_video_list``; other sequences of records are
            stored as a ``VideoList``, which forked workers share without copying).
        mode: "train" (random clip + jitter/crop/flip), "val" (centre clip, centre crop) or
            "test" (``num_clips`` × ``num_crops`` views).
        num_frames, frame_interval: T and τ of a clip (8×8 in the paper).
        seed: base seed of the (seed, epoch, index) generators of training items.
        reader: "pyav" or "decord" (``video.decode_clip``; both give the same frames).
        output: "rgb" or "yuv420" (``data.decode_output``, see transforms.py).
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
        output: str = "rgb",
        test_sampling: str = "uniform",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset mode must be one of {MODES}, got {mode!r}")
        if not records:
            raise DataError(f"{mode} list is empty: no videos to load")
        # num_crops, reader and output are checked where they are used (crop_boxes,
        # decode_clip, the transforms' output arrays) and, from a config, when it loads
        if test_sampling not in sampling.TEST_SAMPLERS:
            rules = ", ".join(sampling.TEST_SAMPLERS)
            raise ValueError(f"test.sampling must be one of {rules}, got {test_sampling!r}")
        self.records = VideoList.of(records)
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
        self.output = output
        self.pad = 0  # yuv420: side of the buffer that holds any crop box of this list
        if output == "yuv420":
            short = min(self.train_scale) if mode == "train" else test_scale
            sizes = self.records.frame_sizes()  # (height, width, rotation), a handful
            if not sizes:
                raise ConfigError(
                    "data.decode_output=yuv420 needs the frame sizes of the list (its width "
                    "and height columns are 0); run prepare again or use decode_output=rgb"
                )
            self.pad = transforms.yuv420_pad(sizes, max(short, crop_size), crop_size)
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
            views = self.eval_views(record)
        except VideoError as exc:
            _report(record, exc, "skipped")
            return None, record.label, index
        return views, record.label, index

    def item_rng(self, index: int, epoch: int) -> np.random.Generator:
        """The generator behind every random choice of training item ``index`` in ``epoch``."""
        return np.random.default_rng([self.seed, epoch, index])

    def train_clip(self, record: VideoRecord, rng: np.random.Generator):
        """Decode and transform one training clip of ``record`` with the item's generator.

        Raises ``VideoError`` when the video cannot be read. The loading benchmark overrides
        this with the reference loaders.
        """
        T, tau = self.num_frames, self.frame_interval
        clip = transforms.TrainClip(
            T,
            self.crop_size,
            self.train_scale,
            self.flip,
            rng,
            self.output,
            self.pad,
            record.rotation,
        )
        indices_for = lambda n: sampling.sample_train_clip(n, T, tau, rng)  # noqa: E731
        decode_clip(record.path, indices_for, clip.put, self.reader, record.rotation)
        return clip.result()

    def _train_item(self, index: int, epoch: int):
        rng = self.item_rng(index, epoch)
        for _ in range(MAX_REPLACEMENTS):
            record = self.records[index]
            if index in self._bad:  # known unreadable in this process: draw again, same as a miss
                index = int(rng.integers(len(self.records)))
                continue
            try:
                clip = self.train_clip(record, rng)
            except VideoError as exc:
                _report(record, exc, "replaced by another video")
                self._bad.add(index)
                index = int(rng.integers(len(self.records)))
                continue
            return clip, record.label, index  # (3, T, S, S) or YuvClips
        raise DataError(
            f"{MAX_REPLACEMENTS} unreadable videos in a row in the train list "
            f"(last: {self.records[index].path}); check the prepared list and the video files"
        )

    def eval_views(self, record: VideoRecord):
        """The val/test views of ``record``; raises VideoError naming an unreadable file."""
        T, tau, K = self.num_frames, self.frame_interval, self.num_clips
        views = self.empty_eval_views(record)
        sample = sampling.TEST_SAMPLERS[self.test_sampling]  # val: K = 1 of the same rule
        indices_for = lambda n: sample(n, T, tau, K)  # noqa: E731
        decode_clip(record.path, indices_for, views.put, self.reader, record.rotation)
        result = views.result()  # (K*C, 3, T, S, S) or YuvClips
        if self.mode == "test":
            return result
        return YuvClips(*(part[0] for part in result)) if self.output == "yuv420" else result[0]

    def empty_eval_views(self, record: VideoRecord) -> transforms.EvalViews:
        """The K clips × C crops of ``record`` before any frame arrived: ``eval_views`` fills
        it from one decode; ``predict --window`` (engine/windows.py) fills one per window."""
        return transforms.EvalViews(
            self.num_clips,
            self.num_frames,
            self.test_scale,
            self.crop_size,
            self.num_crops,
            self.output,
            self.pad,
            record.rotation,
        )


def collate_test(items):
    """Batch val/test items, dropping unreadable videos.

    Returns ``(views, labels, indices, skipped)``: views uint8 (B, K*C, 3, T, S, S) for test or
    (B, 3, T, S, S) for val (``YuvClips`` with the same leading shape for yuv420), labels int64
    (B,), indices int64 (B,), ``skipped`` the dataset indices of the dropped items (list of
    int). When every item was dropped, views, labels and indices are empty tensors (check
    ``labels.numel()``).
    """
    kept = [item for item in items if item[0] is not None]
    skipped = [int(item[2]) for item in items if item[0] is None]
    if not kept:
        empty = torch.empty(0, dtype=torch.int64)
        return torch.empty(0, dtype=torch.uint8), empty, empty.clone(), skipped
    if isinstance(kept[0][0], YuvClips):
        views = YuvClips(
            torch.stack([item[0].planes for item in kept]),
            torch.stack([item[0].geometry for item in kept]),
        )
    else:
        views = torch.stack([item[0] for item in kept])
    labels = torch.tensor([int(item[1]) for item in kept], dtype=torch.int64)
    indices = torch.tensor([int(item[2]) for item in kept], dtype=torch.int64)
    return views, labels, indices, skipped


def _report(record: VideoRecord, exc: Exception, what: str) -> None:
    if record.path in _reported:
        return
    _reported.add(record.path)
    log.warning("unreadable video (%s): %s", what, exc)
