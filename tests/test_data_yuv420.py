"""data.decode_output = yuv420: the device-side conversion against the RGB path (issue 13.4)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from data_prep.codec import write_video
from data_prep.lists import VideoRecord
from tests.test_data_transforms import smooth_video
from videoglore.config import DataConfig, load_config
from videoglore.data.dataset import VideoClipDataset, collate_test
from videoglore.data.transforms import model_input
from videoglore.data.yuv420 import YuvClips, yuv420_to_rgb
from videoglore.errors import ConfigError

S = 64
OFFICIAL_SCALE = 0.0167  # normalised units per uint8 level ("official" normalisation)


@pytest.fixture(scope="module")
def smooth_record(tmp_path_factory):
    path = tmp_path_factory.mktemp("yuv") / "smooth.mp4"
    write_video(path, smooth_video(), keyframe_interval=4, crf=10)
    return [VideoRecord(str(path), 0, "a", 40, 25.0, 128, 96)]


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of two normalised inputs in uint8 levels."""
    return (a - b).abs() / OFFICIAL_SCALE


def datasets(records, mode, **kwargs):
    args = dict(num_frames=4, frame_interval=3, crop_size=S, train_scale=(96, 128), seed=3)
    args.update(test_scale=80, num_clips=2, num_crops=3, **kwargs)
    rgb = VideoClipDataset(records, mode, **args)
    yuv = VideoClipDataset(records, mode, output="yuv420", **args)
    return rgb, yuv


def test_train_batch_matches_the_rgb_path(smooth_record):
    """Same (seed, epoch, index) → same box and flip. Tolerance, in uint8 levels: mean <= 1.5,
    99 % within 8: swscale's fixed-point YUV→RGB comes out up to 2.5 levels low (next tests),
    it rounds to uint8, and it places chroma samples slightly differently at colour edges."""
    rgb, yuv = datasets(smooth_record, "train")
    data = DataConfig(crop_size=S)
    keys = [(0, epoch) for epoch in range(8)]
    a = model_input(default_collate([rgb[k] for k in keys])[0], data)
    batch = default_collate([yuv[k] for k in keys])[0]
    assert isinstance(batch, YuvClips) and batch.planes.dtype == torch.uint8
    assert batch.planes.shape[:2] == (8, 4) and batch.geometry.shape == (8, 4)
    assert set(batch.geometry[:, 2].tolist()) == {0, 1}  # flipped and unflipped clips
    b = model_input(batch, data)
    assert a.shape == b.shape == (8, 3, 4, S, S) and b.dtype == torch.float32
    diff = levels(a, b)
    assert diff.mean() <= 1.5 and diff.flatten().quantile(0.99) <= 8


def test_test_views_match_the_rgb_path(smooth_record):
    """As above; the test boxes shrink 96 → 80 px, where swscale widens its filter (antialias)
    and the device's bilinear sampling does not: mean <= 2 levels, 99 % within 8."""
    rgb, yuv = datasets(smooth_record, "test")
    views_rgb, labels, indices, skipped = collate_test([rgb[0], rgb[0]])
    views_yuv, labels_yuv, _, _ = collate_test([yuv[0], yuv[0]])
    assert views_yuv.planes.shape[:3] == (2, 6, 4) and views_yuv.geometry.shape == (2, 6, 4)
    assert torch.equal(labels, labels_yuv) and skipped == []
    data = DataConfig(crop_size=S)
    a, b = model_input(views_rgb, data), model_input(views_yuv, data)
    assert a.shape == b.shape == (2, 6, 3, 4, S, S)
    diff = levels(a, b)
    assert diff.mean() <= 2 and diff.flatten().quantile(0.99) <= 8
    chunks = views_yuv.split(1)
    assert len(chunks) == 2 and torch.equal(model_input(chunks[1], data), b[1:])


def test_val_item_is_one_view(smooth_record):
    rgb, yuv = datasets(smooth_record, "val")
    clip = yuv[0][0]
    assert clip.planes.ndim == 3 and clip.geometry.shape == (4,)
    data = DataConfig(crop_size=S)
    a = model_input(rgb[0][0][None], data)
    b = model_input(YuvClips(clip.planes[None], clip.geometry[None]), data)
    assert levels(a, b).mean() <= 2


def test_items_are_a_function_of_seed_epoch_index(smooth_record):
    _, yuv = datasets(smooth_record, "train")
    a, b = yuv[(0, 5)][0], yuv[(0, 5)][0]
    assert torch.equal(a.planes, b.planes) and torch.equal(a.geometry, b.geometry)


def test_grey_box_is_bilinear_resize_and_flip():
    """Y only (U = V = 128): the device output is torch's bilinear resize of the box (not
    antialiased), mirrored by the flip flag; padding outside the box is never read."""
    P, h, w = 12, 8, 10
    planes = torch.full((2, 1, P * 3 // 2, P), 128, dtype=torch.uint8)
    luma = torch.randint(16, 235, (h, w), dtype=torch.uint8)
    planes[:, 0, :h, :w] = luma
    planes[:, 0, :P, w:] = 255  # padding: must not leak in
    planes[:, 0, h:P, :] = 255
    geometry = torch.tensor([[h, w, 0, 2 * 0 + 1], [h, w, 1, 1]], dtype=torch.int32)  # full range
    out = yuv420_to_rgb(planes, geometry, 16)  # (2, 3, 1, 16, 16)
    ref = F.interpolate(luma[None, None].float(), size=(16, 16), mode="bilinear")[0, 0]
    for c in range(3):
        assert (out[0, c, 0] - ref).abs().max() < 1e-3
        assert (out[1, c, 0] - ref.flip(-1)).abs().max() < 1e-3


@pytest.mark.parametrize("colorspace, color_range", [(2, 1), (1, 1), (5, 2), (1, 2), (9, 1)])
def test_colour_matrix_matches_swscale(colorspace, color_range):
    """Flat colours through each matrix/range against swscale's own conversion of the frame.

    Ours is the exact BT.601/709/2020 formula; swscale's fixed-point tables (PyAV's path has no
    accurate rounding) are up to 2.5 levels lower: tolerance 3."""
    from videoglore.data import pixels

    rng = np.random.default_rng(colorspace * 10 + color_range)
    H = W = 8
    values = rng.integers(20, 230, (6, 3))
    for y, u, v in values:
        buffer = np.empty((H * 3 // 2, W), np.uint8)
        buffer[:H], buffer[H:] = y, 0
        buffer.reshape(-1)[H * W : H * W * 5 // 4] = u
        buffer.reshape(-1)[H * W * 5 // 4 :] = v
        frame = av.VideoFrame.from_numpy_buffer(buffer, format="yuv420p")
        frame.colorspace, frame.color_range = colorspace, color_range
        expected = pixels.reformat(frame, format="rgb24").to_ndarray()[0, 0].astype(float)
        planes = torch.zeros((1, 1, 6, 4), dtype=torch.uint8)
        planes[0, 0, :4], planes[0, 0, 4:, :2], planes[0, 0, 4:, 2:] = int(y), int(u), int(v)
        code = pixels.colour_code(frame)
        out = yuv420_to_rgb(planes, torch.tensor([[4, 4, 0, code]]), 2)[0, :, 0, 0, 0]
        assert np.abs(out.numpy() - expected).max() <= 3, (y, u, v, code)


def test_decode_output_is_checked_when_the_config_loads():
    assert load_config(overrides=["data.decode_output=yuv420"]).data.decode_output == "yuv420"
    assert DataConfig().decode_output == "rgb"
    with pytest.raises(ConfigError, match="data.decode_output.*did you mean yuv420"):
        load_config(overrides=["data.decode_output=yuv42"])


def test_loaders_ship_yuv420_batches(tmp_path):
    from tests.helpers import tiny_config, write_video_dataset
    from videoglore.data import build_loader

    cfg = tiny_config(write_video_dataset(tmp_path, videos_per_class=2, val_per_class=1), tmp_path)
    cfg.data.decode_output, cfg.data.num_workers = "yuv420", 1
    clips, labels, _ = next(iter(build_loader(cfg, "train", False, batch_size=2)))
    assert isinstance(clips, YuvClips) and clips.planes.shape[:2] == (2, 8)
    assert model_input(clips, cfg.data).shape == (2, 3, 8, 32, 32) and labels.shape == (2,)
    cfg.data.num_workers = 0
    views, labels, indices, skipped = next(iter(build_loader(cfg, "test", False, batch_size=2)))
    assert isinstance(views, YuvClips) and views.geometry.shape[:2] == (2, 2)  # K=2, C=1
    assert model_input(views, cfg.data).shape == (2, 2, 3, 8, 32, 32)


def test_yuv420_needs_frame_sizes_and_names_a_stale_list(smooth_record, caplog):
    import logging
    from dataclasses import replace

    with pytest.raises(ConfigError, match="decode_output=yuv420 needs the frame sizes"):
        VideoClipDataset([replace(smooth_record[0], width=0, height=0)], "train", output="yuv420")
    stale = [replace(smooth_record[0], width=64, height=48)]  # the file is 128x96
    ds = VideoClipDataset(stale, "test", 4, 3, 32, test_scale=40, num_clips=1, output="yuv420")
    with caplog.at_level(logging.WARNING, logger="videoglore.data.dataset"):
        assert ds[0] == (None, 0, 0)
    assert "smooth.mp4" in caplog.text and "larger than the list says" in caplog.text
