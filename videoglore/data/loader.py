"""Config → dataset → DataLoader, with the samplers that make DDP runs exact.

    split    list file        dataset mode    sampler                      collate
    train    data.train_list  "train"         TrainSampler (shuffled,      default
                                              per-epoch, (index, epoch))
    val      data.val_list    "val"           ShardSampler (no padding)    collate_test
    test     data.val_list    "test"          ShardSampler (no padding)    collate_test

Val and test batches are ``(views, labels, indices, skipped)`` (see ``collate_test``) so that an
unreadable video is counted, never silently dropped. Under DDP, ``ShardSampler`` gives each rank
a disjoint contiguous slice of the list without the padding of ``DistributedSampler``, so every
video is evaluated exactly once. The engine calls ``loader.sampler.set_epoch(epoch)`` before each
training epoch (and ``skip_first(n)`` to resume in the middle of one).
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from data_prep.codec import quiet_video_libraries
from data_prep.lists import VideoList, VideoRecord, read_video_list
from videoglore.config import Config
from videoglore.data import sampling
from videoglore.data.dataset import VideoClipDataset, collate_test
from videoglore.errors import ConfigError

log = logging.getLogger(__name__)

# Workers are forked on Linux, whatever Python's default (forkserver from 3.14): a forked worker
# shares the list's arrays (data_prep.lists.VideoList) with its rank; a worker started afresh
# unpickles its own copy (a 650k-row list: 15 MB against 364 MB of a worker's private memory,
# the fresh interpreter's imports included).
_FORK = "fork" if sys.platform == "linux" else None

SPLITS = {
    "train": ("train_list", "train"),
    "val": ("val_list", "val"),
    "test": ("val_list", "test"),
}


class TrainSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(index, epoch)`` keys and can resume mid-epoch.

    The epoch in the key seeds the item's augmentation (``VideoClipDataset.item_rng``), so the
    data of an epoch depends only on (seed, epoch), never on worker state. Works without
    ``torch.distributed`` when ``num_replicas=1, rank=0``.
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0

    def skip_first(self, count: int) -> None:
        """Leave out the first ``count`` items of this rank in the next pass (exact resume)."""
        self._skip = max(0, int(count))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self._skip :]
        self._skip = 0
        return iter([(index, self.epoch) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self._skip


class ShardSampler(Sampler[int]):
    """Rank ``rank`` of ``world_size`` gets the contiguous slice ``[n*r/w, n*(r+1)/w)``, in order.

    The slices are disjoint and cover every index exactly once, with no padding; ranks may get
    one item more or less than others (the tester gathers per-video results, not means).
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.start = num_items * rank // world_size
        self.stop = num_items * (rank + 1) // world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


# Thread-pool sizes read by OpenMP, BLAS and similar libraries when they start in a worker.
ONE_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy/random from torch's per-worker seed, one thread.

    torch gives each worker ``base_seed + worker_id``, with ``base_seed`` drawn per epoch from the
    loader's generator (once for persistent workers). Our own sampling does not use these global
    RNGs (see ``VideoClipDataset.item_rng``); seeding them keeps any other user reproducible.

    Workers run in parallel already, so each uses one core: torch's intra-op pool gets one
    thread, and OpenMP/BLAS pools started from here on are told so by the environment. The
    readers pass one thread to libavcodec, decord and swscale themselves (video.py, pixels.py).
    FFmpeg's own messages are silenced here once per worker (the readers ask again, at the cost
    of a set lookup, for processes that are not loader workers). decord is not imported: a
    pyav worker never needs it, and ``read_frames`` accepts whatever bridge decord is set to.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    for name in ONE_THREAD_ENV:
        os.environ[name] = "1"
    quiet_video_libraries()


def build_dataset(
    cfg: Config, split: str, records: Sequence[VideoRecord] | None = None
) -> VideoClipDataset:
    """The dataset of ``split`` ("train", "val", "test"); ``records`` overrides the list file."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    key, mode = SPLITS[split]
    data = cfg.data
    if records is None:
        list_path = getattr(data, key)
        if not list_path:
            raise ConfigError(f"data.{key} is not set: point it at a prepared {split} list")
        records = read_video_list(list_path, root=data.root or None)
    records = VideoList.of(records)
    where = f"data.{key} ({getattr(data, key)})" if getattr(data, key) else f"{split} videos"
    warn_short_videos(records, data.num_frames, data.frame_interval, where)
    return VideoClipDataset(
        records,
        mode,
        num_frames=data.num_frames,
        frame_interval=data.frame_interval,
        crop_size=data.crop_size,
        train_scale=data.train_scale,
        test_scale=data.test_scale,
        flip=data.flip,
        num_clips=cfg.test.num_clips,
        num_crops=cfg.test.num_crops,
        seed=cfg.train.seed,
        reader=data.reader,
        output=data.decode_output,
        test_sampling=cfg.test.sampling,
    )


def warn_short_videos(records: VideoList, T: int, tau: int, where: str) -> None:
    """Log once, when a dataset is built, how many videos are shorter than one clip.

    Their clips loop (sampling.py) rather than fail, which is right for a few videos and a sign
    of a wrong list or clip setting for many. Counted from the list's frame counts in the main
    process (rank 0 under DDP), so a run says it once per list, never per worker or per item.
    """
    span = sampling.clip_span(T, tau)
    short = int(np.count_nonzero(records.column("frame_count") < span))
    rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    if short and (rank0 or torch.distributed.get_rank() == 0):
        log.warning(
            "%s: %d of %d videos are shorter than one clip (%d frames every %d = %d frames); "
            "their clips loop, repeating frames",
            where,
            short,
            len(records),
            T,
            tau,
            span,
        )


def build_loader(cfg: Config, split: str, distributed: bool, batch_size: int) -> DataLoader:
    """DataLoader of ``split``; see the module docstring for samplers and batch formats."""
    dataset = build_dataset(cfg, split)
    rank, world = 0, 1
    if distributed:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    workers = cfg.data.num_workers
    if split == "train":
        sampler = TrainSampler(dataset, num_replicas=world, rank=rank, seed=cfg.train.seed)
        collate, drop_last = None, len(sampler) >= batch_size  # no 1-clip BatchNorm batches
    else:
        sampler = ShardSampler(len(dataset), rank, world)
        collate, drop_last = collate_test, False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(cfg.train.seed + rank),
        multiprocessing_context=_FORK if workers > 0 else None,
    )
