"""Spatial transforms of the paper's recipe on uint8 clips, and the on-device normalisation.

    decoded frames uint8 (N, H, W, 3)
      │ train: random short-side scale in [lo, hi], random S×S crop, horizontal flip
      │ test:  short side → test_scale, centre / 3 / 5 crops of S×S
      ▼
    uint8 (3, T, S, S) or (K*C, 3, T, S, S)      ← what DataLoader workers ship (4× less than float)
      │ normalize(batch, kind) on the device, batched
      ▼
    float32, same shape

Everything stays uint8 until ``normalize``: torch's antialiased bilinear resize has a fast uint8
path for channels-last images, so the frames of a clip are resized in one call and never
converted to float on the CPU. Training crops first (in source coordinates) and then resizes
only the cropped box to S×S, which equals scale-then-crop up to rounding of the box edges but
touches fewer pixels.

Recipe: §4.1 of the paper (scale jitter, 224² crop, flip; 256 short side at test) and the
released code's ``data/iterator_factory.py``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Mean and std on the [0, 1] scale, RGB order. "official" is what the released GloRe and MF-Net
# code use for their 3D networks (``network/config.py`` in facebookresearch/GloRe and
# cypw/PyTorch-MFNet: "MXNet default mean & std"): mean (124, 117, 104) / 255 and
# std 1 / (0.0167 * 255), i.e. x_normalised = (x_uint8 - mean_uint8) * 0.0167.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "official": ((124 / 255, 117 / 255, 104 / 255), (1 / (0.0167 * 255),) * 3),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

CROP_COUNTS = (1, 3, 5)


def normalize(batch: torch.Tensor, kind: str = "official") -> torch.Tensor:
    """uint8 (N, 3, T, H, W) or (N, V, 3, T, H, W) → float32 normalised, on the batch's device.

    The channel axis is the fourth from the end in both layouts.
    """
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; choose from {sorted(NORMALIZATIONS)}")
    if batch.ndim not in (5, 6) or batch.shape[-4] != 3:
        raise ValueError(
            f"expected (N, 3, T, H, W) or (N, V, 3, T, H, W), got {tuple(batch.shape)}"
        )
    mean, std = NORMALIZATIONS[kind]
    shape = (3, 1, 1, 1)
    mean_255 = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(shape) * 255
    scale = 1 / (torch.tensor(std, dtype=torch.float32, device=batch.device).view(shape) * 255)
    return (batch.to(torch.float32) - mean_255) * scale


def to_channels_first(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) → uint8 (N, 3, H, W) view (channels-last memory, no copy)."""
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 frames (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames.permute(0, 3, 1, 2)


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 (N, 3, H, W) to (N, 3, *size), all frames at once."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side equal to ``short`` and the aspect ratio kept."""
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def train_transform(
    frames: np.ndarray | torch.Tensor,
    scale_range: tuple[int, int] | list[int],
    crop_size: int,
    flip: bool,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Random short-side scale, random square crop, random flip: uint8 (T, H, W, 3) → (3, T, S, S).

    The short side is drawn uniformly from ``scale_range`` (inclusive, clamped to >= crop_size);
    the crop box is drawn in the scaled frame and mapped back to source pixels, then only that
    box is resized to ``crop_size``².
    """
    x = to_channels_first(frames)  # (T, 3, H, W)
    height, width = x.shape[-2:]
    lo, hi = (max(int(v), crop_size) for v in scale_range)
    short = int(rng.integers(lo, max(lo, hi) + 1))
    scaled_h, scaled_w = short_side_size(height, width, short)
    top = int(rng.integers(0, scaled_h - crop_size + 1))
    left = int(rng.integers(0, scaled_w - crop_size + 1))
    do_flip = bool(flip and rng.random() < 0.5)
    # Same box in source pixels.
    box_h = min(height, max(1, round(crop_size * height / scaled_h)))
    box_w = min(width, max(1, round(crop_size * width / scaled_w)))
    y0 = min(round(top * height / scaled_h), height - box_h)
    x0 = min(round(left * width / scaled_w), width - box_w)
    x = resize(x[:, :, y0 : y0 + box_h, x0 : x0 + box_w], (crop_size, crop_size))
    x = x.permute(1, 0, 2, 3)  # (3, T, S, S)
    x = x.contiguous()
    return x.flip(-1) if do_flip else x


def crop_boxes(height: int, width: int, crop_size: int, num_crops: int) -> list[tuple[int, int]]:
    """Top-left corners of the test crops in a (height, width) frame.

    1: centre. 3: left/top, centre, right/bottom along the long side, centred on the short side
    (covers the long side, as in the paper's 3-crop testing). 5: four corners + centre
    (the 10×5 protocol).
    """
    if num_crops not in CROP_COUNTS:
        raise ValueError(f"number of test crops must be one of {CROP_COUNTS}, got {num_crops}")
    if crop_size > min(height, width):
        raise ValueError(f"crop {crop_size} does not fit in a {height}x{width} frame")
    bottom, right = height - crop_size, width - crop_size
    centre = (bottom // 2, right // 2)
    if num_crops == 1:
        return [centre]
    if num_crops == 3:
        if width >= height:
            return [(bottom // 2, 0), centre, (bottom // 2, right)]
        return [(0, right // 2), centre, (bottom, right // 2)]
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), centre]


def test_transform(
    frames: np.ndarray | torch.Tensor,
    num_clips: int,
    scale: int,
    crop_size: int,
    num_crops: int,
) -> torch.Tensor:
    """Short side → ``scale``, then crops: uint8 (K*T, H, W, 3) → (K*C, 3, T, S, S).

    ``frames`` holds the K clips one after another; views are ordered clip-major
    (view ``k * C + c`` is clip k, crop c). All K*T frames are resized in one call.
    """
    x = to_channels_first(frames)  # (K*T, 3, H, W)
    total, _, height, width = x.shape
    if total % num_clips:
        raise ValueError(f"{total} frames cannot be split into {num_clips} clips")
    T = total // num_clips
    x = resize(x, short_side_size(height, width, max(scale, crop_size)))
    views = []
    for top, left in crop_boxes(x.shape[-2], x.shape[-1], crop_size, num_crops):
        view = x[:, :, top : top + crop_size, left : left + crop_size]
        views.append(view.reshape(num_clips, T, 3, crop_size, crop_size).transpose(1, 2))
    out = torch.stack(views, dim=1)  # (K, C, 3, T, S, S)
    return out.reshape(num_clips * len(views), 3, T, crop_size, crop_size)
