"""Spatial transforms of the paper's recipe, done while decoding, and the input of the model.

    video.decode_clip ─▶ put(frame, slots): each kept frame once, still YUV
      │ train: random short-side scale in [lo, hi], random S×S crop, horizontal flip
      │ test:  short side → test_scale, centre / 3 / 5 crops of S×S, K clips
      ▼
    data.decode_output = "rgb":    one swscale call per kept frame (pixels.py) writes the
        resized RGB crop straight into uint8 (3, T, S, S) / (K*C, 3, T, S, S); with 3 or 5 test
        crops, which cover (nearly) all of the scaled frame, it scales the whole frame once
    data.decode_output = "yuv420": the crops' YUV planes as they are (``YuvClips``), half the
        bytes of RGB; no colour conversion or resize in the worker
      │ DataLoader (uint8 until the device)
      ▼
    model_input(clips, data_cfg, device): [YUV → RGB, resize, flip] → normalise, batched
      ▼
    float32 (N, 3, T, S, S) or (N, V, 3, T, S, S)

Training draws the crop in the scaled frame and maps the box back to source pixels, so only the
box is resized (scale-then-crop up to rounding of the box edges). Videos stored sideways
(``VideoRecord.rotation``) are cropped in upright coordinates: the box is mapped onto the stored
frame and only its pixels are turned upright (pixels.py). The random choices are drawn
in a fixed order from the item's generator (clip start in sampling.py, then short side, top,
left, flip here), so (seed, epoch, index) fixes the item.

Recipe: §4.1 of the paper (scale jitter, 224² crop, flip; 256 short side at test) and the
released code's ``data/iterator_factory.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from videoglore.data import pixels
from videoglore.data.pixels import Box

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that make tensors (model_input, normalize, result()):
# the view builders also serve prediction with an exported ONNX model, which runs without torch
# (videoglore.engine.onnx_predict).

# Mean and std on the [0, 1] scale, RGB order. "official" is what the released GloRe and MF-Net
# code use for their 3D networks (``network/config.py`` in facebookresearch/GloRe and
# cypw/PyTorch-MFNet: "MXNet default mean & std"): mean (124, 117, 104) / 255 and
# std 1 / (0.0167 * 255), i.e. x_normalised = (x_uint8 - mean_uint8) * 0.0167.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "official": ((124 / 255, 117 / 255, 104 / 255), (1 / (0.0167 * 255),) * 3),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

CROP_COUNTS = (1, 3, 5)
OUTPUTS = ("rgb", "yuv420")


def model_input(clips, data, device: torch.device | str | None = None) -> torch.Tensor:
    """A loader batch of clips (either ``data.decode_output``) → normalised float32 on ``device``.

    Args:
        clips: uint8 (N, 3, T, S, S) / (N, V, 3, T, S, S), or ``YuvClips`` of the same N (, V).
        data: the ``DataConfig`` (``crop_size``, ``normalization``).
        device: where the model runs; None keeps the clips' device.
    """
    from videoglore.data.yuv420 import YuvClips, yuv420_to_rgb

    if isinstance(clips, YuvClips):
        planes = clips.planes.to(device, non_blocking=True)
        geometry = clips.geometry.to(device, non_blocking=True)
        x = yuv420_to_rgb(planes, geometry, data.crop_size)  # float (..., 3, T, S, S), 0..255
    else:
        x = clips.to(device, non_blocking=True)
    return normalize(x, data.normalization)


def normalize(batch: torch.Tensor, kind: str = "official") -> torch.Tensor:
    """uint8 (or float on the 0..255 scale) (N, 3, T, H, W) / (N, V, 3, T, H, W) → float32.

    The channel axis is the fourth from the end in both layouts.
    """
    import torch

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


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side equal to ``short`` and the aspect ratio kept."""
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def source_box(
    height: int,
    width: int,
    scaled: tuple[int, int],
    top: int,
    left: int,
    crop: int,
    rotation: int = 0,
) -> Box:
    """The ``crop``² window at (top, left) of the frame scaled to ``scaled``, in source pixels.

    ``height`` × ``width`` is the upright frame; with a ``rotation`` the box is that of the
    stored frame (``pixels.stored_box``), snapped there.
    """
    scaled_h, scaled_w = scaled
    box_h = min(height, max(1, round(crop * height / scaled_h)))
    box_w = min(width, max(1, round(crop * width / scaled_w)))
    y0 = min(round(top * height / scaled_h), height - box_h)
    x0 = min(round(left * width / scaled_w), width - box_w)
    box = Box(y0, x0, box_h, box_w)
    if rotation:
        box = pixels.stored_box(box, height, width, rotation)
        height, width = pixels.upright_size(height, width, rotation)  # the stored frame's
    return pixels.snap(box, height, width)


def train_box(
    height: int,
    width: int,
    scale_range: Sequence[int],
    crop_size: int,
    flip: bool,
    rng: np.random.Generator,
    rotation: int = 0,
) -> tuple[Box, bool]:
    """Random short side in ``scale_range`` (inclusive, clamped to >= crop), random crop, flip,
    in the upright ``height`` × ``width`` frame.

    Returns the crop's box in source (stored) pixels and whether to mirror it once upright.
    """
    lo, hi = (max(int(v), crop_size) for v in scale_range)
    short = int(rng.integers(lo, max(lo, hi) + 1))
    scaled = short_side_size(height, width, short)
    top = int(rng.integers(0, scaled[0] - crop_size + 1))
    left = int(rng.integers(0, scaled[1] - crop_size + 1))
    do_flip = bool(flip and rng.random() < 0.5)
    return source_box(height, width, scaled, top, left, crop_size, rotation), do_flip


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


def yuv420_pad(sizes: Iterable[tuple[int, int, int]], short: int, crop_size: int) -> int:
    """Side of the square buffer that holds any crop box of frames of these upright
    (height, width, rotation) sizes (``VideoList.frame_sizes``).

    ``short``: the smallest short side the frames are scaled to (the largest boxes). Each
    distinct size is boxed once (a list of 260k videos has a handful of sizes).
    """
    side = 4
    for height, width, rotation in set(sizes):
        scaled = short_side_size(height, width, short)
        box = source_box(height, width, scaled, 0, 0, crop_size, rotation)
        side = max(side, box.height, box.width)
    return side + side % 4


class TrainClip:
    """One training item, built frame by frame as ``video.decode_clip`` hands frames over.

    The crop is drawn from ``rng`` when the first frame arrives (its size is then known), in
    the frame turned ``rotation`` degrees clockwise (the video's upright orientation).
    ``result()``: rgb uint8 (3, T, S, S); yuv420 ``YuvClips`` (planes (T, 3P/2, P), geometry (4,)).
    """

    def __init__(
        self,
        num_frames: int,
        crop_size: int,
        scale_range: Sequence[int],
        flip: bool,
        rng: np.random.Generator,
        output: str = "rgb",
        pad: int = 0,
        rotation: int = 0,
    ) -> None:
        self.crop_size, self.scale_range, self.flip, self.rng = crop_size, scale_range, flip, rng
        self.rotation = rotation
        self.box: Box | None = None
        self.size: tuple[int, int] | None = None
        self.mirror = False
        self.views = _Views(1, num_frames, crop_size, output, pad)

    def put(self, frame, slots: list[int]) -> None:
        size = pixels.frame_size(frame)
        if self.box is None:
            self.size = size
            upright = pixels.upright_size(*size, self.rotation)
            self.box, self.mirror = train_box(
                *upright, self.scale_range, self.crop_size, self.flip, self.rng, self.rotation
            )
        elif size != self.size:
            raise ValueError(f"frame size changes inside the video ({self.size} then {size})")
        targets = [(0, t) for t in slots]
        self.views.put_box(frame, targets, self.box, self.mirror, self.rotation)

    def result(self):
        return self.views.result(single=True)


class EvalViews:
    """The K clips × C crops of a val/test item, built frame by frame (see ``TrainClip``).

    Slot ``k * T + t`` is frame t of clip k; view ``k * C + c`` is clip k, crop c. The crops
    are placed in the frame turned ``rotation`` degrees clockwise.
    ``result()``: rgb uint8 (K*C, 3, T, S, S); yuv420 ``YuvClips`` ((K*C, T, 3P/2, P), (K*C, 4)).
    """

    def __init__(
        self,
        num_clips: int,
        num_frames: int,
        scale: int,
        crop_size: int,
        num_crops: int,
        output: str = "rgb",
        pad: int = 0,
        rotation: int = 0,
    ) -> None:
        self.num_frames, self.scale, self.crop_size, self.num_crops = (
            num_frames,
            scale,
            crop_size,
            num_crops,
        )
        self.rotation = rotation
        self.size: tuple[int, int] | None = None
        self.views = _Views(num_clips * num_crops, num_frames, crop_size, output, pad)

    def put(self, frame, slots: list[int]) -> None:
        size = pixels.frame_size(frame)
        if self.size is None:  # the boxes are fixed per video: work them out once
            self.size = size
            upright = pixels.upright_size(*size, self.rotation)
            self.scaled = short_side_size(*upright, max(self.scale, self.crop_size))
            self.corners = crop_boxes(*self.scaled, self.crop_size, self.num_crops)
            crop, rotation = self.crop_size, self.rotation
            self.boxes = [
                source_box(*upright, self.scaled, *at, crop, rotation) for at in self.corners
            ]
        elif size != self.size:
            raise ValueError(f"frame size changes inside the video ({self.size} then {size})")
        C, S = self.num_crops, self.crop_size
        clips_frames = [divmod(slot, self.num_frames) for slot in slots]  # (k, t) per slot
        if self.views.output == "yuv420" or C == 1:  # only the boxes' pixels are converted
            for c, box in enumerate(self.boxes):
                targets = [(k * C + c, t) for k, t in clips_frames]
                self.views.put_box(frame, targets, box, False, self.rotation)
            return
        # 3 or 5 crops cover (nearly) the whole scaled frame: scale it once, cut the crops out
        scaled = pixels.scale_frame(frame, *self.scaled, self.rotation)  # (3, h, w) upright
        out = self.views.out
        for k, t in clips_frames:
            for c, (top, left) in enumerate(self.corners):
                out[k * C + c, :, t] = scaled[:, top : top + S, left : left + S]

    def result(self):
        return self.views.result(single=False)

    def array(self) -> np.ndarray:
        """The rgb views as a numpy uint8 (K*C, 3, T, S, S) array, without torch."""
        if self.views.output != "rgb":
            raise ValueError("EvalViews.array() is for rgb output; use result() for yuv420")
        return self.views.out


class _Views:
    """The output arrays of V views × T frames, rgb or yuv420, filled slot by slot."""

    def __init__(self, num_views: int, T: int, crop_size: int, output: str, pad: int) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"decode output must be one of {OUTPUTS}, got {output!r}")
        self.output, self.pad = output, pad
        if output == "rgb":
            self.out = np.zeros((num_views, 3, T, crop_size, crop_size), np.uint8)
        else:
            if pad < 4 or pad % 4:
                raise ValueError(f"yuv420 output needs a pad side that is a multiple of 4: {pad}")
            self.out = np.zeros((num_views, T, pad * 3 // 2, pad), np.uint8)
            self.geometry = np.zeros((num_views, 4), np.int32)

    def put_box(
        self,
        frame,
        targets: list[tuple[int, int]],
        box: Box,
        mirror: bool,
        rotation: int = 0,
    ) -> None:
        """``box`` of ``frame`` into frame t of view v for every ``(v, t)`` in ``targets``:
        converted (or its planes cut out) once, turned ``rotation`` degrees clockwise, copied to
        the other targets."""
        (view, first), *others = targets
        if self.output == "rgb":
            pixels.scale_into(frame, box, self.out[view, :, first], mirror, rotation)
            for v, t in others:
                self.out[v, :, t] = self.out[view, :, first]
            return
        if max(box.height, box.width) > self.pad:
            raise ValueError(
                f"crop box {box.height}x{box.width} exceeds the {self.pad}px yuv420 buffer: the "
                f"frame is larger than the list says; run prepare again"
            )
        y, u, v, colour = pixels.yuv420_box(frame, box)
        if rotation:  # (h, w) → (w, h) for 90 and 270; chroma turns with luma
            y, u, v = (pixels.rotate_plane(plane, rotation) for plane in (y, u, v))
        P, (h, w) = self.pad, y.shape
        for view, t in targets:
            planes = self.out[view, t]  # (3P/2, P): Y on top, then U | V side by side
            planes[:h, :w] = y
            planes[P : P + h // 2, : w // 2] = u
            planes[P : P + h // 2, P // 2 : P // 2 + w // 2] = v
            self.geometry[view] = (h, w, int(mirror), colour)

    def result(self, single: bool):
        import torch

        from videoglore.data.yuv420 import YuvClips

        out = torch.from_numpy(self.out[0] if single else self.out)
        if self.output == "rgb":
            return out
        geometry = torch.from_numpy(self.geometry[0] if single else self.geometry)
        return YuvClips(out, geometry)


def _feed(builder, frames: np.ndarray) -> None:
    """Hand RGB frames (N, H, W, 3) to a builder as ``decode_clip`` would, one slot each."""
    for t, frame in enumerate(frames):
        builder.put(np.ascontiguousarray(frame), [t])


def train_transform(
    frames: np.ndarray,
    scale_range: Sequence[int],
    crop_size: int,
    flip: bool,
    rng: np.random.Generator,
) -> torch.Tensor:
    """``TrainClip`` on decoded RGB frames: uint8 (T, H, W, 3) → (3, T, S, S)."""
    frames = np.asarray(frames)
    builder = TrainClip(len(frames), crop_size, scale_range, flip, rng)
    _feed(builder, frames)
    return builder.result()


def test_transform(
    frames: np.ndarray, num_clips: int, scale: int, crop_size: int, num_crops: int
) -> torch.Tensor:
    """``EvalViews`` on decoded RGB frames: uint8 (K*T, H, W, 3) → (K*C, 3, T, S, S)."""
    frames = np.asarray(frames)
    if len(frames) % num_clips:
        raise ValueError(f"{len(frames)} frames cannot be split into {num_clips} clips")
    builder = EvalViews(num_clips, len(frames) // num_clips, scale, crop_size, num_crops)
    _feed(builder, frames)
    return builder.result()
