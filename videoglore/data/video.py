"""The one place that opens and writes video files.

Reading goes through decord (random access by frame index, the fastest CPU reader for clip
sampling); writing goes through PyAV's bundled FFmpeg (libx264), so no system ffmpeg is needed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from videoglore.errors import VideoError

log = logging.getLogger(__name__)


def open_video(path: str | Path, num_threads: int = 1):
    """Open ``path`` with decord and check that it has frames.

    Raises:
        VideoError: naming the file and the reason when it is missing, empty or undecodable.
    """
    import decord

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: video file is empty (0 bytes)")
    try:
        reader = decord.VideoReader(str(path), num_threads=num_threads)
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError variants
        raise VideoError(f"{path}: cannot open video ({_first_line(exc)})") from None
    if len(reader) == 0:
        raise VideoError(f"{path}: video has no frames")
    return reader


def read_frames(path: str | Path, indices: np.ndarray | list[int], reader=None) -> np.ndarray:
    """Decode the frames at ``indices``; returns uint8 (T, H, W, 3) RGB.

    Pass an already opened ``reader`` to avoid reopening the file for several clips. Without
    one, a fresh single-threaded reader is opened and released here: one reader per item keeps
    memory bounded over long runs (decord's readers grow with use, dmlc/decord#1, #208).
    """
    own_reader = reader is None
    reader = reader if reader is not None else open_video(path)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= len(reader)):
        raise VideoError(
            f"{path}: frame index out of range 0..{len(reader) - 1} "
            f"(asked {indices.min()}..{indices.max()})"
        )
    try:
        batch = reader.get_batch(indices.tolist())
        # A global decord.bridge.set_bridge("torch") elsewhere would hand back a tensor.
        frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        del batch
        if own_reader:
            # Known decord leaks (dmlc/decord#197, #208): the reader keeps decoded frames
            # buffered after get_batch; seeking back to 0 releases them before the reader goes.
            reader.seek(0)
    except Exception as exc:
        raise VideoError(f"{path}: cannot decode frames ({_first_line(exc)})") from None
    finally:
        if own_reader:
            del reader
    return frames


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 25.0,
    keyframe_interval: int = 8,
    crf: int = 23,
) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as an H.264 .mp4, atomically (temp file + rename).

    Height and width must be even (yuv420p). ``keyframe_interval`` is the GOP length: short GOPs
    make random clip access cheap (see the data benchmark).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 needs even height and width, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=_fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = keyframe_interval
        stream.options = {"crf": str(crf), "preset": "veryfast", "bf": "0"}
        for frame in frames:
            packet_list = stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
            container.mux(packet_list)
        container.mux(stream.encode())
    tmp.replace(path)


def _fps_fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
