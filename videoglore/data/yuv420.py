"""``data.decode_output: yuv420``: crop boxes leave the worker as YUV, the device makes RGB.

A worker then only decodes and copies the kept boxes' planes (no swscale at all), and ships
1.5 bytes per pixel instead of 3. Each view is one padded buffer per frame::

    planes uint8 (T, 3P/2, P)     rows [0, P): Y box (h, w) at the top-left
                                  rows [P, 3P/2): U box (h/2, w/2) | V box at column P/2
    geometry int32 (4,)           h, w, flip, colour code (pixels.colour_code)

so clips of different box sizes (scale jitter) still collate into one tensor. On the device,
``yuv420_to_rgb`` samples each plane at the output pixels' centres in the box (bilinear, the
half-pixel convention of ``F.interpolate(align_corners=False)``, clamped at the box edges;
mirrored by the sampling grid), then applies the YUV→RGB matrix of the frame's colour code.
Bilinear sampling is not antialiased: exact for enlarging boxes (prepared videos: short side 256,
train scale 256-320, so boxes are at most S), aliasing when boxes are much larger than S.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from videoglore.data.pixels import COLOUR_MATRICES


class YuvClips(NamedTuple):
    """YUV420 crop boxes of clips; a batch of these collates field by field."""

    planes: torch.Tensor  # uint8 (..., T, 3P/2, P)
    geometry: torch.Tensor  # int32 (..., 4): box height, box width, flip, colour code

    @property
    def shape(self) -> torch.Size:
        """The leading (batch) dimensions, e.g. (N, V) of test views (a tensor's ``shape[:2]``)."""
        return self.planes.shape[:-3]

    def flatten(self, start_dim: int, end_dim: int) -> YuvClips:
        """Merge leading dimensions (as ``Tensor.flatten`` on them), e.g. (N, V) → (N*V)."""
        return YuvClips(
            self.planes.flatten(start_dim, end_dim), self.geometry.flatten(start_dim, end_dim)
        )

    def split(self, size: int) -> list[YuvClips]:
        """Chunks of at most ``size`` along the first axis (as ``Tensor.split``)."""
        return [
            YuvClips(p, g)
            for p, g in zip(self.planes.split(size), self.geometry.split(size), strict=True)
        ]


def yuv420_to_rgb(planes: torch.Tensor, geometry: torch.Tensor, size: int) -> torch.Tensor:
    """YUV420 boxes → RGB resized to ``size``², float on the 0..255 scale, on planes' device.

    planes uint8 (..., T, 3P/2, P), geometry int (..., 4) → float32 (..., 3, T, size, size).
    """
    *lead, T, rows, P = planes.shape
    if rows != P * 3 // 2 or P % 4:
        raise ValueError(f"expected yuv420 planes (..., T, 3P/2, P), got {tuple(planes.shape)}")
    x = planes.reshape(-1, T, rows, P).to(torch.float32)  # (M, T, 3P/2, P)
    g = geometry.reshape(-1, 4).to(device=planes.device, dtype=torch.float32)  # (M, 4)
    height, width, flip = g[:, 0], g[:, 1], g[:, 2] > 0
    half = P // 2
    luma = _sample(x[:, :, :P], height, width, flip, P, size)  # (M, T, S, S)
    chroma_planes = torch.cat([x[:, :, P:, :half], x[:, :, P:, half:]], dim=1)  # (M, 2T, P/2, P/2)
    chroma = _sample(chroma_planes, height / 2, width / 2, flip, half, size)  # (M, 2T, S, S)
    rgb = _to_rgb(luma, chroma[:, :T], chroma[:, T:], geometry.reshape(-1, 4)[:, 3])
    return rgb.reshape(*lead, 3, T, size, size)


def _sample(x, height, width, flip, side: int, size: int) -> torch.Tensor:
    """Bilinear samples of the (height, width) box at the top-left of each (side, side) image.

    x (M, C, side, side); height, width, flip (M,) → (M, C, size, size).
    """
    centres = torch.arange(size, device=x.device, dtype=torch.float32) + 0.5  # (S,)
    ys = _positions(centres, height)  # (M, S) source rows, pixel units
    xs = _positions(centres, width)
    xs = torch.where(flip[:, None], xs.flip(-1), xs)
    to_unit = lambda p: (p + 0.5) * (2.0 / side) - 1.0  # noqa: E731  pixel → grid_sample's [-1, 1]
    grid = torch.stack(
        [
            to_unit(xs)[:, None, :].expand(-1, size, -1),
            to_unit(ys)[:, :, None].expand(-1, -1, size),
        ],
        dim=-1,
    )  # (M, S, S, 2) as (x, y)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _positions(centres: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Source coordinates of output pixel centres over ``extent`` pixels, clamped inside."""
    scale = extent[:, None] / len(centres)  # (M, 1)
    return torch.minimum((centres[None] * scale - 0.5).clamp(min=0), extent[:, None] - 1)


def _to_rgb(y, u, v, colour: torch.Tensor) -> torch.Tensor:
    """(M, T, S, S) planes → (M, 3, T, S, S) RGB in 0..255 with each view's matrix and range."""
    table = torch.tensor(COLOUR_MATRICES, dtype=torch.float32, device=y.device)  # (3, 2)
    colour = colour.to(device=y.device, dtype=torch.long)
    kr, kb = table[colour // 2].unbind(-1)  # (M,)
    full = (colour % 2).to(torch.float32)
    shape = (-1, 1, 1, 1)
    kr, kb, full = kr.view(shape), kb.view(shape), full.view(shape)
    kg = 1 - kr - kb
    luma = torch.where(full > 0, y, (y - 16) * (255 / 219))
    chroma_scale = torch.where(full > 0, torch.ones_like(full), torch.full_like(full, 255 / 224))
    cb, cr = (u - 128) * chroma_scale, (v - 128) * chroma_scale
    red = luma + 2 * (1 - kr) * cr
    blue = luma + 2 * (1 - kb) * cb
    green = luma - (2 * kb * (1 - kb) * cb + 2 * kr * (1 - kr) * cr) / kg
    return torch.stack([red, green, blue], dim=1).clamp(0, 255)
