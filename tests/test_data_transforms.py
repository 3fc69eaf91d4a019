"""uint8 transforms (shapes, dtype, values, crop positions, view order) and normalize."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoglore.data import transforms
from videoglore.data.transforms import NORMALIZATIONS, crop_boxes, normalize, train_transform

test_transform = transforms.test_transform
test_transform.__test__ = False  # a library function, not a test


def gradient_frames(T=6, H=48, W=64):
    """uint8 (T, H, W, 3): red grows left→right, green top→bottom, blue = frame number."""
    x = np.zeros((T, H, W, 3), np.uint8)
    x[..., 0] = np.linspace(0, 255, W).astype(np.uint8)[None, None, :]
    x[..., 1] = np.linspace(0, 255, H).astype(np.uint8)[None, :, None]
    x[..., 2] = (np.arange(T) * 10)[:, None, None]
    return x


def test_train_transform_shape_dtype_and_content():
    frames = gradient_frames()
    flips = set()
    for seed in range(12):
        out = train_transform(frames, (36, 48), 32, True, np.random.default_rng(seed))
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.uint8 and out.is_contiguous()
        # time and channels not mixed up: blue channel is the frame number
        assert out[2, :, 16, 16].tolist() == [0, 10, 20, 30, 40, 50]
        red = out[0, 0, 16].to(torch.int32)
        assert (red[-1] - red[0]).abs() > 20  # a crop of a gradient, not a constant
        flips.add(bool(red[-1] < red[0]))
        assert (out[1, 0, -1, 5].int() - out[1, 0, 0, 5].int()) > 0  # never flipped vertically
    assert flips == {True, False}  # both flipped and unflipped crops occur


def test_train_transform_without_flip_and_against_scale_then_crop():
    frames = gradient_frames(T=2)
    for seed in range(5):
        out = train_transform(frames, (48, 48), 48, False, np.random.default_rng(seed))
        # short side 48 == crop: the crop is a 48x48 window of the unscaled frame
        red = out[0, 0, 0].to(torch.int32)
        assert (red[-1] > red[0]).item()
        ref = torch.from_numpy(frames).permute(3, 0, 1, 2)  # (3, T, H, W)
        left = int(np.argmin(np.abs(ref[0, 0, 0].numpy().astype(int) - int(red[0]))))
        assert torch.equal(out, ref[:, :, :, left : left + 48])


def test_constant_frames_stay_constant():
    frames = np.full((4, 40, 60, 3), 77, np.uint8)
    out = train_transform(frames, (50, 70), 36, True, np.random.default_rng(0))
    assert out.unique().tolist() == [77]


@pytest.mark.parametrize("num_crops", [1, 3, 5])
def test_test_transform_views_are_clip_major(num_crops):
    K, T = 3, 4
    frames = np.zeros((K * T, 48, 64, 3), np.uint8)
    for k in range(K):
        frames[k * T : (k + 1) * T] = 20 * (k + 1)
    out = test_transform(frames, K, 40, 32, num_crops)
    assert out.shape == (K * num_crops, 3, T, 32, 32) and out.dtype == torch.uint8
    for v in range(K * num_crops):
        assert out[v].unique().tolist() == [20 * (v // num_crops + 1)]


def test_test_transform_resizes_short_side_then_crops():
    frames = gradient_frames(T=2, H=48, W=64)
    out = test_transform(frames, 1, 24, 24, 3)  # → 24x32, three 24x24 crops at x = 0, 4, 8
    ref = F.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
        size=(24, 32),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    for c, left in enumerate([0, 4, 8]):
        expected = ref[:, :, :, left : left + 24].permute(1, 0, 2, 3)
        assert (out[c].float() - expected).abs().max() <= 1.0


def test_crop_boxes():
    assert crop_boxes(256, 340, 224, 1) == [(16, 58)]
    assert crop_boxes(256, 340, 224, 3) == [(16, 0), (16, 58), (16, 116)]  # along the long side
    assert crop_boxes(340, 256, 224, 3) == [(0, 16), (58, 16), (116, 16)]
    assert crop_boxes(256, 340, 224, 5) == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]
    with pytest.raises(ValueError, match="one of"):
        crop_boxes(256, 340, 224, 2)
    with pytest.raises(ValueError, match="does not fit"):
        crop_boxes(200, 340, 224, 1)


def test_normalize_official_and_imagenet():
    batch = torch.zeros(2, 3, 4, 5, 5, dtype=torch.uint8)
    batch[:, 0] = 124
    batch[:, 1] = 255
    out = normalize(batch, "official")
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert torch.allclose(out[:, 0], torch.zeros(()), atol=1e-5)  # the official mean of red
    assert torch.allclose(out[:, 1], torch.tensor((255 - 117) * 0.0167), atol=1e-4)
    assert torch.allclose(out[:, 2], torch.tensor(-104 * 0.0167), atol=1e-4)
    out = normalize(batch, "imagenet")
    assert torch.allclose(out[:, 1], torch.tensor((1 - 0.456) / 0.224), atol=1e-4)
    assert torch.allclose(out[:, 2], torch.tensor(-0.406 / 0.225), atol=1e-4)
    assert set(NORMALIZATIONS) == {"official", "imagenet"}


def test_normalize_multiview_batch_and_errors():
    views = torch.full((2, 6, 3, 4, 8, 8), 124, dtype=torch.uint8)
    out = normalize(views)
    assert out.shape == views.shape
    assert out[:, :, 0].abs().max() < 1e-5 and out[:, :, 1].min() > 0
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(views, "mxnet")
    with pytest.raises(ValueError, match="expected"):
        normalize(torch.zeros(3, 4, 8, 8, dtype=torch.uint8))
