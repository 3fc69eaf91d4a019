"""Dataset, loaders and samplers over tiny generated videos, including broken files."""

import argparse
import json
import logging
import os
import sys

import numpy as np
import pytest
import torch

from benchmarks.loading import bench as bench_data
from data_prep.codec import write_video
from data_prep.lists import VideoList, VideoRecord, read_video_list, write_video_list
from videoglore.config import Config
from videoglore.data import (
    ShardSampler,
    TrainSampler,
    VideoClipDataset,
    build_dataset,
    build_loader,
    collate_test,
)

T, TAU, S = 4, 2, 32


def moving_video(num_frames, seed):
    rng = np.random.default_rng(seed)
    frames = np.full((num_frames, 48, 64, 3), rng.integers(0, 200, 3), np.uint8)
    for t in range(num_frames):
        frames[t, 10:26, (2 * t) % 48 : (2 * t) % 48 + 16] = 255
    return frames


@pytest.fixture(scope="module")
def video_list(tmp_path_factory):
    """train.csv: 3 good videos (labels 0, 1, 2), a garbage file (label 3), a missing file (4)."""
    root = tmp_path_factory.mktemp("videos")
    records = []
    for i, n in enumerate([24, 32, 40]):
        write_video(root / f"v{i}.mp4", moving_video(n, i))
        records.append(VideoRecord(f"v{i}.mp4", i, f"class{i}", n, 25.0, 64, 48))
    (root / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    records.append(VideoRecord("broken.mp4", 3, "class3", 30, 25.0, 64, 48))
    records.append(VideoRecord("missing.mp4", 4, "class4", 30, 25.0, 64, 48))
    write_video_list(root / "train.csv", records)
    return root / "train.csv"


def make_cfg(video_list, workers=0):
    cfg = Config()
    cfg.data.train_list = cfg.data.val_list = str(video_list)
    cfg.data.num_frames, cfg.data.frame_interval, cfg.data.crop_size = T, TAU, S
    cfg.data.train_scale, cfg.data.test_scale = [36, 48], 36
    cfg.data.num_workers = workers
    cfg.test.num_clips, cfg.test.num_crops = 2, 3
    return cfg


def test_train_items_replace_broken_videos_with_matching_labels(video_list, caplog):
    ds = build_dataset(make_cfg(video_list), "train")
    assert len(ds) == 5
    with caplog.at_level(logging.WARNING, logger="videoglore.data.dataset"):
        for epoch in range(3):
            for i in range(len(ds)):
                clip, label, index = ds[(i, epoch)]
                assert clip.shape == (3, T, S, S) and clip.dtype == torch.uint8
                assert index in (0, 1, 2) and label == ds.records[index].label
                if i < 3:
                    assert index == i  # good videos are never replaced
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("broken.mp4" in m for m in warnings) == 1  # logged once
    assert sum("missing.mp4" in m for m in warnings) == 1
    assert all("replaced" in m for m in warnings)


def test_train_items_are_a_function_of_seed_epoch_index(video_list):
    ds = build_dataset(make_cfg(video_list), "train")
    a, b = ds[(2, 5)][0], ds[(2, 5)][0]
    assert torch.equal(a, b)
    assert any(not torch.equal(a, ds[(2, e)][0]) for e in range(5))  # epochs differ


def test_test_items_report_broken_videos(video_list):
    ds = build_dataset(make_cfg(video_list), "test")
    items = [ds[i] for i in range(len(ds))]
    assert items[3] == (None, 3, 3) and items[4] == (None, 4, 4)
    assert items[0][0].shape == (2 * 3, 3, T, S, S)
    views, labels, indices, skipped = collate_test(items)
    assert views.shape == (3, 6, 3, T, S, S) and views.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2] and indices.tolist() == [0, 1, 2]
    assert skipped == [3, 4]
    views, labels, indices, skipped = collate_test(items[3:])
    assert labels.numel() == 0 and views.numel() == 0 and skipped == [3, 4]


def test_val_item_is_the_centre_clip_and_deterministic(video_list):
    ds = build_dataset(make_cfg(video_list), "val")
    clip, label, index = ds[1]
    assert clip.shape == (3, T, S, S) and (label, index) == (1, 1)
    assert torch.equal(clip, ds[1][0])


def test_train_loader_with_worker_is_reproducible_and_resumable(video_list):
    cfg = make_cfg(video_list, workers=1)
    records = read_video_list(video_list)[:3]  # good videos only
    loader = build_loader(cfg, "train", distributed=False, batch_size=1)
    loader.dataset.records = records  # (workers start at the first iteration)
    loader.sampler.dataset = records
    loader.sampler.num_samples = loader.sampler.total_size = 3
    loader.sampler.set_epoch(4)
    first = list(loader)
    assert len(first) == 3 and first[0][0].shape == (1, 3, T, S, S)
    loader.sampler.set_epoch(4)
    loader.sampler.skip_first(1)
    resumed = list(loader)
    assert len(resumed) == 2
    for (a, la, ia), (b, lb, ib) in zip(first[1:], resumed, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ia, ib)


def test_test_loader_counts_every_video(video_list):
    loader = build_loader(make_cfg(video_list), "test", distributed=False, batch_size=2)
    seen, skipped = [], []
    for views, labels, indices, batch_skipped in loader:
        if labels.numel():  # the last batch holds only the two unreadable videos
            assert views.shape[1:] == (6, 3, T, S, S)
        seen += indices.tolist()
        skipped += batch_skipped
    assert sorted(seen) == [0, 1, 2] and sorted(skipped) == [3, 4]


@pytest.mark.parametrize("num_items", [0, 1, 5, 7, 10, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_sampler_covers_each_index_once(num_items, world):
    shards = [list(ShardSampler(num_items, rank, world)) for rank in range(world)]
    assert sorted(sum(shards, [])) == list(range(num_items))
    assert [len(ShardSampler(num_items, r, world)) for r in range(world)] == list(map(len, shards))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_train_sampler_yields_epoch_keys():
    sampler = TrainSampler(list(range(10)), num_replicas=2, rank=1, seed=3)
    sampler.set_epoch(7)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 5 and all(e == 7 for _, e in keys)
    other = TrainSampler(list(range(10)), num_replicas=2, rank=0, seed=3)
    other.set_epoch(7)
    assert sorted([i for i, _ in keys] + [i for i, _ in other]) == list(range(10))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_stays_bounded_over_many_reads(video_list):
    records = read_video_list(video_list)[:3]
    ds = VideoClipDataset(records, "train", T, TAU, S, (36, 48), seed=0)
    for i in range(30):  # warm up allocators
        ds[(i % 3, i)]
    before = rss_bytes()
    for i in range(300):
        ds[(2, i)]
    growth = rss_bytes() - before
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 300 reads"


def test_dataset_rejects_empty_list_and_bad_mode():
    from videoglore.errors import DataError

    with pytest.raises(DataError, match="empty"):
        VideoClipDataset([], "train")
    with pytest.raises(ValueError, match="mode"):
        VideoClipDataset([VideoRecord("x", 0, "a", 1, 25.0, 1, 1)], "predict")


def test_benchmark_quick_mode_writes_table(tmp_path):
    parser = argparse.ArgumentParser()
    bench_data.add_arguments(parser)
    out = tmp_path / "result" / "data"
    args = parser.parse_args(
        ["--quick", "--repeats", "2", "--no-raw", "--keyframe-intervals", "8", "1"]
        + ["--cache", str(tmp_path / "cache"), "--out", str(out)]
    )
    result = bench_data.run(args)
    assert result.files == [out.with_suffix(".json"), out.with_suffix(".md")]
    report = json.loads(out.with_suffix(".json").read_text())
    assert [row["video"] for row in report["rows"]] == [
        "prepared, keyframe interval 8",
        "prepared, keyframe interval 1",
    ]
    names = list(bench_data.LOADERS)
    assert report["loaders"] == names and names[0] == "today (pyav)"
    assert {"ours rgb", "ours yuv420", "reference (read_video)"} <= set(names)
    for row in report["rows"]:
        assert sorted(row["clips_per_s"]) == sorted(names)
        assert all(len(v) == 2 and min(v) > 0 for v in row["clips_per_s"].values())
    sizes = {row["keyframe_interval"]: row["mb_per_video"] for row in report["rows"]}
    assert sizes[1] > sizes[8] > 0  # all-intra files are larger
    table = out.with_suffix(".md").read_text()
    assert "| prepared, keyframe interval 1 |" in table and "decode ceiling" in table
    assert "ours rgb / today (pyav)" in table and "ours rgb / reference (read_video)" in table
    assert table.strip() == result.table.strip()


def test_benchmark_video_sets():
    parser = argparse.ArgumentParser()
    bench_data.add_arguments(parser)
    kinds = bench_data.video_kinds(parser.parse_args([]))
    assert kinds == [
        ("raw (GOP 250)", 250, "none"),
        ("re-encoded (GOP 8, default tuning)", 8, "none"),
        ("prepared, keyframe interval 8", 8, "fastdecode"),
        ("prepared, keyframe interval 4", 4, "fastdecode"),
        ("prepared, keyframe interval 1", 1, "fastdecode"),
    ]


def test_benchmark_loaders_produce_the_same_kind_of_item(video_list):
    """Every benchmarked loader returns a training clip of the same shape for the same key."""
    records = read_video_list(video_list)[:3]
    for name, (cls, kwargs) in bench_data.LOADERS.items():
        ds = cls(records, "train", T, TAU, S, (36, 48), seed=0, **kwargs)
        clip, label, index = ds[(1, 2)]
        if kwargs.get("output") == "yuv420":
            _, rows, pad = clip.planes.shape
            assert clip.planes.shape[0] == T and rows == pad * 3 // 2 and pad >= S, name
        else:
            assert clip.shape == (3, T, S, S), name
        assert (label, index) == (1, 1)


def test_worker_init_leaves_one_thread_per_worker(video_list, monkeypatch):
    """Issue 13.1: torch, OpenMP/BLAS pools started in a worker get one thread each."""
    from videoglore.data.loader import ONE_THREAD_ENV, seed_worker

    for name in ONE_THREAD_ENV:
        monkeypatch.setenv(name, "8")
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        seed_worker(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert {os.environ[name] for name in ONE_THREAD_ENV} == {"1"}
    assert {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"} <= set(ONE_THREAD_ENV)
    loader = build_loader(make_cfg(video_list, workers=1), "train", False, batch_size=1)
    assert loader.worker_init_fn is seed_worker


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the start method on Linux only")
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_workers_are_forked_and_share_the_flat_list(video_list, split):
    """Issue 18.2: a forked worker shares the parent's list arrays untouched; a worker started by
    forkserver or spawn (Python 3.14's default on Linux is forkserver) unpickles its own copy."""
    loader = build_loader(make_cfg(video_list, workers=1), split, False, batch_size=1)
    assert loader.multiprocessing_context.get_start_method() == "fork"
    assert isinstance(loader.dataset.records, VideoList)


def test_short_videos_are_counted_once_when_the_loader_is_built(video_list, caplog):
    """Issue 11.13: videos shorter than one clip loop; one warning with their number, from the
    main process when the dataset is built (not per worker or per item)."""
    cfg = make_cfg(video_list, workers=1)
    cfg.data.num_frames, cfg.data.frame_interval = 8, 4  # span 29: the 24-frame video is short
    with caplog.at_level(logging.WARNING, logger="videoglore.data"):
        loader = build_loader(cfg, "train", distributed=False, batch_size=1)
        loader.sampler.set_epoch(0)
        for _ in loader:
            pass
        for _ in loader:  # a second epoch: still one warning
            pass
    short = [r for r in caplog.records if "shorter than one clip" in r.getMessage()]
    assert len(short) == 1
    message = short[0].getMessage()
    assert "1 of 5 videos" in message and "29 frames" in message and "train.csv" in message
    caplog.clear()
    cfg.data.num_frames, cfg.data.frame_interval = T, TAU  # span 7: none is short
    with caplog.at_level(logging.WARNING, logger="videoglore.data"):
        build_loader(cfg, "test", distributed=False, batch_size=1)
    assert not [r for r in caplog.records if "shorter than one clip" in r.getMessage()]


def test_worker_init_needs_no_decord_and_quiets_the_video_libraries(monkeypatch):
    """A pyav worker never imports decord (its start-up was paid only to set a bridge that
    ``read_frames`` copes with); FFmpeg's messages are silenced once, when the worker starts."""
    import sys

    from videoglore.data import loader

    calls = []
    monkeypatch.setitem(sys.modules, "decord", None)  # any `import decord` now fails
    monkeypatch.setattr(loader, "quiet_video_libraries", lambda: calls.append(1))
    threads = torch.get_num_threads()
    try:
        loader.seed_worker(0)
    finally:
        torch.set_num_threads(threads)
    assert calls == [1]


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        ("train", {"reader": "opencv"}, "unknown video reader 'opencv'"),
        ("val", {"reader": "opencv"}, "unknown video reader 'opencv'"),
        ("train", {"output": "yuv"}, "decode output must be one of"),
        ("test", {"output": "yuv"}, "decode output must be one of"),
    ],
)
def test_a_wrong_argument_stops_the_first_item_not_a_video(video_list, mode, kwargs, message):
    """Each value is checked once, where it is used (a config checks them when it loads): a
    dataset built by hand with a wrong one fails loudly, never as an unreadable video."""
    records = read_video_list(video_list)[:1]
    ds = VideoClipDataset(records, mode, T, TAU, S, (36, 48), 36, num_clips=1, **kwargs)
    with pytest.raises(ValueError, match=message):
        ds[0]


def test_test_sampling_is_checked_when_the_dataset_is_built(video_list):
    records = read_video_list(video_list)[:1]
    with pytest.raises(ValueError, match="test.sampling must be one of uniform, released"):
        VideoClipDataset(records, "test", test_sampling="even")
