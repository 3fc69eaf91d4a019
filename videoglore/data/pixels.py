"""Pixels of one decoded frame: crop, resize and colour conversion in one swscale call.

A decoded frame is a PyAV ``VideoFrame`` (YUV as the decoder left it) or a uint8 (H, W, 3) RGB
array (decord). The transforms keep a box of it, so only that box is converted::

    YUV420 frame ─ box planes copied into one I420 buffer ─┐
    RGB array    ─ box is a strided view (no copy) ────────┼─▶ swscale: resize + YUV→RGB
    other formats ─ whole frame → RGB first ───────────────┘     ─▶ planar GBR ─▶ (3, h, w) slot
                                                  (YUV not resized: packed RGB, see scale_into)

    YUV420 frame ─ box planes (views) ─────────────────────▶ yuv420 output (device converts)

swscale runs single-threaded (``SWSCALE_THREADS``; PyAV's default, 0, starts one thread per core
in every DataLoader worker) with bilinear filtering, which widens its kernel when shrinking
(antialiased like torch's ``antialias=True``). Planar output lets each colour plane be copied
straight into the (3, T, S, S) item, mirrored when the clip is flipped.

Boxes on YUV420 frames have even corners, a height that is a multiple of 4 and an even width
(chroma is stored at half resolution; PyAV's I420 buffers need height % 4 == 0); ``snap`` moves
a box by at most 2 pixels to get there.

A video stored sideways (list column ``rotation``: degrees clockwise that make it upright) keeps
its frames as decoded; the transforms choose their boxes in upright coordinates, ``stored_box``
maps a box onto the stored frame, and only the box's pixels are turned, after swscale
(``scale_into``) or as planes (``rotate_plane``). Rotation 0 takes none of these steps.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

SWSCALE_THREADS = 1  # one core per DataLoader worker
INTERPOLATION = "BILINEAR"
YUV420 = ("yuv420p", "yuvj420p")

# Colour codes carried with yuv420 clips: index into COLOUR_MATRICES, plus 1 for full range.
# Kr, Kb of the YUV→RGB matrix (ITU-R BT.601, BT.709, BT.2020).
COLOUR_MATRICES = ((0.299, 0.114), (0.2126, 0.0722), (0.2627, 0.0593))
_MATRIX_OF_COLORSPACE = {1: 1, 9: 2, 10: 2}  # AVColorSpace → matrix; anything else BT.601
_reformatters: dict[int, object] = {}  # process id → VideoReformatter (one per worker)


class Box(NamedTuple):
    """A rectangle of source pixels: top-left corner and size."""

    top: int
    left: int
    height: int
    width: int


def frame_size(frame) -> tuple[int, int]:
    """(height, width) of a decoded frame."""
    if isinstance(frame, np.ndarray):
        return frame.shape[0], frame.shape[1]
    return frame.height, frame.width


def upright_size(height: int, width: int, rotation: int) -> tuple[int, int]:
    """(height, width) of a stored frame once turned ``rotation`` degrees clockwise."""
    return (width, height) if rotation in (90, 270) else (height, width)


def stored_box(box: Box, height: int, width: int, rotation: int) -> Box:
    """The box of the stored frame that turned ``rotation`` degrees clockwise becomes ``box``
    of the upright ``height`` × ``width`` frame."""
    top, left, h, w = box
    if rotation == 90:  # upright (y, x) = stored (H - 1 - x, y), stored H = upright width
        return Box(width - left - w, top, w, h)
    if rotation == 180:
        return Box(height - top - h, width - left - w, h, w)
    if rotation == 270:  # upright (y, x) = stored (x, W - 1 - y), stored W = upright height
        return Box(left, height - top - h, w, h)
    return box


def rotate_plane(plane: np.ndarray, rotation: int) -> np.ndarray:
    """A (h, w) or (C, h, w) image turned ``rotation`` degrees clockwise (a view)."""
    return np.rot90(plane, -rotation // 90, axes=(-2, -1))


def snap(box: Box, height: int, width: int) -> Box:
    """``box`` moved/resized by at most 2 px to fit YUV420 sampling inside (height, width)."""
    h = min(max(4, 4 * round(box.height / 4)), height - height % 4)
    w = min(max(2, 2 * round(box.width / 2)), width - width % 2)
    top = min(box.top - box.top % 2, (height - h) // 2 * 2)
    left = min(box.left - box.left % 2, (width - w) // 2 * 2)
    return Box(top, left, h, w)


def reformat(frame, **kwargs):
    """``VideoFrame.reformat`` through this process's reformatter, single-threaded, bilinear.

    Every swscale call of the data path goes through here.
    """
    pid = os.getpid()
    reformatter = _reformatters.get(pid)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _reformatters[pid] = VideoReformatter()
    return reformatter.reformat(
        frame, threads=SWSCALE_THREADS, interpolation=INTERPOLATION, **kwargs
    )


def scale_into(
    frame, box: Box | None, dst: np.ndarray, flip: bool = False, rotation: int = 0
) -> None:
    """Resize ``box`` of ``frame`` (None: all of it) to ``dst``'s size as RGB into ``dst``.

    ``dst``: uint8 (3, h, w), any strides (a slot of the output item). One swscale call.
    ``rotation``: the box is turned that many degrees clockwise after scaling (``dst`` is
    upright), then mirrored if ``flip``.
    """
    _, height, width = dst.shape
    if rotation:
        stored = np.empty((3, *upright_size(height, width, rotation)), np.uint8)  # sides swapped
        scale_into(frame, box, stored)
        upright = rotate_plane(stored, rotation)
        dst[:] = upright[:, :, ::-1] if flip else upright
        return
    source = _box_frame(frame, box)
    if (source.height, source.width) == (height, width) and source.format.name in YUV420:
        # Unscaled YUV420 → planar GBR in swscale (libswscale 9.5, PyAV 18.1) writes garbage
        # into the last width % 16 columns when that is 2..8 (342, 454, 456 px: the right test
        # crop at test_scale = the prepared short side). Its packed RGB path is right and equal
        # elsewhere, bit for bit; it costs a strided copy (~0.15 ms for 456×256).
        packed = plane_array(reformat(source, width=width, height=height, format="rgb24"), 0)
        rgb = packed[:height, : width * 3].reshape(height, width, 3).transpose(2, 0, 1)
        dst[:] = rgb[:, :, ::-1] if flip else rgb
        return
    scaled = reformat(source, width=width, height=height, format="gbrp")
    for channel, plane in ((0, 2), (1, 0), (2, 1)):  # gbrp planes are G, B, R
        values = plane_array(scaled, plane)[:height, :width]
        dst[channel] = values[:, ::-1] if flip else values


def scale_frame(frame, height: int, width: int, rotation: int = 0) -> np.ndarray:
    """The whole frame resized to (height, width) once turned ``rotation`` degrees clockwise,
    uint8 (3, height, width) RGB."""
    out = np.empty((3, height, width), np.uint8)
    scale_into(frame, None, out, rotation=rotation)
    return out


def yuv420_box(frame, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``box`` (snapped) of ``frame`` as YUV420 planes: (Y (h, w), U, V (h/2, w/2), colour code).

    Views into the decoded frame when it is YUV420 already; other frames are converted with
    swscale (RGB → BT.601 limited range).
    """
    if isinstance(frame, np.ndarray) or frame.format.name not in YUV420:
        frame = reformat(_box_frame(frame, box), format="yuv420p")
        box = Box(0, 0, box.height, box.width)
    top, left, h, w = box
    y = plane_array(frame, 0)[top : top + h, left : left + w]
    u = plane_array(frame, 1)[top // 2 : (top + h) // 2, left // 2 : (left + w) // 2]
    v = plane_array(frame, 2)[top // 2 : (top + h) // 2, left // 2 : (left + w) // 2]
    return y, u, v, colour_code(frame)


def colour_code(frame) -> int:
    """How ``frame``'s YUV maps to RGB, as swscale reads it: 2 × matrix + full range."""
    matrix = _MATRIX_OF_COLORSPACE.get(int(frame.colorspace), 0)
    full = frame.format.name == "yuvj420p" or int(frame.color_range) == 2  # AVCOL_RANGE_JPEG
    return 2 * matrix + int(full)


def plane_array(frame, index: int) -> np.ndarray:
    """Plane ``index`` of a PyAV frame as a uint8 (rows, line size) view, no copy."""
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height]


def _box_frame(frame, box: Box | None):
    """``box`` of ``frame`` as a ``VideoFrame`` swscale can read (the frame itself if None)."""
    import av

    if isinstance(frame, np.ndarray):  # RGB: a strided view, wrapped without a copy
        if box is not None:
            frame = frame[box.top : box.top + box.height, box.left : box.left + box.width]
        return av.VideoFrame.from_numpy_buffer(frame, format="rgb24")
    if box is None:
        return frame
    if frame.format.name not in YUV420:  # rare formats: convert all of it once, then crop
        return _box_frame(reformat(frame, format="rgb24").to_ndarray(), box)
    y, u, v, _ = yuv420_box(frame, box)
    h, w = y.shape
    buffer = np.empty(h * w * 3 // 2, np.uint8)  # I420: Y, then U, then V, rows packed
    buffer[: h * w].reshape(h, w)[:] = y
    buffer[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)[:] = u
    buffer[h * w * 5 // 4 :].reshape(h // 2, w // 2)[:] = v
    boxed = av.VideoFrame.from_numpy_buffer(buffer.reshape(h * 3 // 2, w), format=frame.format.name)
    boxed.colorspace, boxed.color_range = frame.colorspace, frame.color_range
    return boxed
