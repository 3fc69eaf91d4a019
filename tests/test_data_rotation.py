"""Videos stored sideways (list column ``rotation``) load as upright clips: both readers, both
decode outputs, train / val / test and predict, crops chosen in upright coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.codec import write_video
from data_prep.lists import ROTATIONS, VideoRecord
from videoglore.data import pixels
from videoglore.data.dataset import VideoClipDataset
from videoglore.data.yuv420 import YuvClips, yuv420_to_rgb

H, W, N = 64, 96, 16  # upright size (decord 0.6 cannot read 48-pixel-wide videos: not used)
T, TAU, S = 4, 2, 32


def upright_frames() -> np.ndarray:
    """uint8 (N, H, W, 3) that no rotation or mirror maps onto itself: red grows to the right,
    green downwards, a blue blob near the top-left corner drifts right. Smooth, so that the
    codec and a box snapped ±2 px elsewhere change little."""
    y, x = np.mgrid[0:H, 0:W]
    frames = np.empty((N, H, W, 3), np.uint8)
    frames[..., 0] = 40 + 2 * x
    frames[..., 1] = 40 + 3 * y
    for t in range(N):
        blob = np.exp(-(((x - 14 - t) / 8.0) ** 2 + ((y - 12) / 7.0) ** 2))
        frames[t, ..., 2] = 30 + 200 * blob
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[int, Path]:
    """The same content upright (0) and stored turned anticlockwise by 90, 180, 270 degrees
    with a display matrix that says to turn it clockwise by that much, as a phone writes it (and
    as ``prepare --no-reencode`` lists it: ``rotation`` read from that matrix)."""
    root = tmp_path_factory.mktemp("rotated")
    frames = upright_frames()
    paths = {}
    for rotation in ROTATIONS:
        stored = np.ascontiguousarray(np.rot90(frames, rotation // 90, axes=(1, 2)))
        paths[rotation] = root / f"stored_{rotation}.mp4"
        write_video(paths[rotation], stored, crf=10, display_rotation=rotation)
    return paths


def record(path: Path, rotation: int) -> VideoRecord:
    return VideoRecord(str(path), 0, "a", N, 25.0, W, H, rotation)  # width, height: upright


def clips(rec: VideoRecord, mode: str, reader: str, output: str) -> torch.Tensor:
    """Items of a one-video dataset as float RGB on the 0..255 scale, one row per item (three
    epochs of training items: several crops, scales and flips)."""
    ds = VideoClipDataset(
        [rec], mode, T, TAU, S, (40, 48), 40, num_clips=2, num_crops=3, seed=3, reader=reader,
        output=output,
    )  # fmt: skip
    keys = [(0, epoch) for epoch in range(3)] if mode == "train" else [0]
    rows = []
    for key in keys:
        item, _, index = ds[key]
        assert item is not None and index == 0  # read, never skipped or replaced
        if isinstance(item, YuvClips):
            item = yuv420_to_rgb(item.planes, item.geometry, S)
        rows.append(item.float().reshape(-1))
    return torch.stack(rows)


@pytest.mark.parametrize("output", ["rgb", "yuv420"])
@pytest.mark.parametrize("reader", ["pyav", "decord"])
@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_a_sideways_video_loads_as_the_upright_one(videos, mode, reader, output):
    """Issue 17.5: the clips of a video stored sideways and listed with its rotation equal those
    of the upright video (the same draws of crop, scale and flip, made in upright coordinates)
    up to the codec and boxes snapped ±2 px on the stored frame. With PyAV, which hands over
    the stored frames, a wrong rotation is far off; decord applies the display matrix itself
    (its frames are turned back to the stored ones and then by the list's rotation: the two
    cancel), so it must not turn them twice."""
    upright = clips(record(videos[0], 0), mode, reader, output)
    for rotation in (90, 180, 270):
        turned = clips(record(videos[rotation], rotation), mode, reader, output)
        assert turned.shape == upright.shape
        assert (turned - upright).abs().mean() < 2.5, rotation  # measured 0.2-1.3
        if reader == "pyav":
            wrong = clips(record(videos[rotation], (rotation + 90) % 360), mode, reader, output)
            assert (wrong - upright).abs().mean() > 20, rotation  # measured 31-34


def test_predict_turns_the_video_as_the_probe_says(videos, monkeypatch):
    """predict builds its one-video test dataset from the probe, which reads the display
    matrix: a phone video stored sideways gives the views of the upright one."""
    from videoglore.config import Config
    from videoglore.engine import inference

    cfg = Config()
    cfg.data.num_frames, cfg.data.frame_interval, cfg.data.crop_size = T, TAU, S
    cfg.data.test_scale, cfg.test.num_clips, cfg.test.num_crops = 40, 2, 3
    seen = []

    def forward_views(model, views, cfg, device, fast):
        seen.append(views.float())
        return torch.zeros(len(views), 2)

    monkeypatch.setattr(inference, "forward_views", forward_views)
    for rotation in (0, 90, 270):
        inference._video_scores(None, str(videos[rotation]), cfg, torch.device("cpu"), None)
    assert seen[0].shape == seen[1].shape == seen[2].shape == (6, 3, T, S, S)
    assert (seen[0] - seen[1]).abs().mean() < 2.5
    assert (seen[0] - seen[2]).abs().mean() < 2.5


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_the_stored_box_turned_is_the_upright_box(rotation):
    """pixels.stored_box: the pixels of the box on the stored frame, turned clockwise, are
    exactly the pixels of the box on the upright frame (any box, any frame shape)."""
    rng = np.random.default_rng(rotation)
    for height, width in ((6, 10), (9, 4), (7, 7)):
        upright = rng.integers(0, 256, (height, width), dtype=np.uint8)
        stored = np.rot90(upright, rotation // 90)  # anticlockwise: what the file holds
        assert pixels.upright_size(*stored.shape, rotation) == (height, width)
        assert np.array_equal(pixels.rotate_plane(stored, rotation), upright)
        for _ in range(20):
            h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            box = pixels.stored_box(pixels.Box(top, left, h, w), height, width, rotation)
            cut = stored[box.top : box.top + box.height, box.left : box.left + box.width]
            assert np.array_equal(
                pixels.rotate_plane(cut, rotation), upright[top : top + h, left : left + w]
            )
