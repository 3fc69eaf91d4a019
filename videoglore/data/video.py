"""The one place that opens and writes video files.

Two readers sit behind :func:`read_clip` (``DataConfig.reader``):

* ``"pyav"`` (default): one forward pass over the packets, decoding from the keyframe before
  each needed frame and converting only the needed frames to RGB. Needs decode order =
  presentation order (no B-frames, true for every prepared video); other streams fall back to
  decord.
* ``"decord"``: decord's random access by frame index. decord converts every frame it decodes to
  RGB, including the frames decoded only to reach a target after a keyframe.

On prepared videos (256 px, keyframe every 8 frames, no B-frames) the PyAV path loads about
1.6–2× as many training clips per core as decord (benchmarks/RESULTS.md, "Data loading").
Frame indices are presentation-order positions in both readers, so they return the same frames.

Writing goes through PyAV's bundled FFmpeg (libx264), so no system ffmpeg is needed;
:func:`x264_options` holds the encoder settings shared with ``data_prep/encode.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_prep.codec import open_decord, quiet_video_libraries
from data_prep.files import first_line
from videoglore.errors import VideoError

log = logging.getLogger(__name__)

READERS = ("pyav", "decord")
REORDER_CHECK = 16  # packets demuxed past the last needed one to confirm there are no B-frames


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: video file is empty (0 bytes)")


def open_video(path: str | Path, num_threads: int = 1):
    """Open ``path`` with decord and check that it has frames.

    Raises:
        VideoError: naming the file and the reason when it is missing, empty or undecodable.
    """
    path = Path(path)
    _check_file(path)
    try:
        reader = open_decord(path, num_threads)
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError variants
        raise VideoError(f"{path}: cannot open video ({first_line(exc)})") from None
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
        raise VideoError(f"{path}: cannot decode frames ({first_line(exc)})") from None
    finally:
        if own_reader:
            del reader
    return frames


def read_clip(
    path: str | Path,
    indices_for: Callable[[int], np.ndarray],
    reader: str = "pyav",
) -> np.ndarray:
    """Decode the frames chosen by ``indices_for(num_frames)`` (any int array shape).

    Returns uint8 (indices.size, H, W, 3) RGB in the order of the flattened indices; each frame
    is decoded once however often it is asked for. Nothing stays open afterwards (one reader
    per call keeps memory bounded over long runs).

    Raises:
        VideoError: naming the file when it is missing, empty, undecodable or too short.
    """
    if reader not in READERS:
        raise ValueError(f"unknown video reader {reader!r}; choose from {READERS}")
    if reader == "pyav":
        frames = _read_clip_pyav(Path(path), indices_for)
        if frames is not None:
            return frames
        # B-frames (decode order != presentation order): decord handles the reordering.
    handle = open_video(path)
    try:
        indices = np.asarray(indices_for(len(handle)), dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        frames = read_frames(path, unique, reader=handle)
        handle.seek(0)  # drop decord's buffered frames before the reader goes (#208)
    finally:
        del handle
    return frames if np.array_equal(unique, indices) else frames[inverse.reshape(-1)]


def _read_clip_pyav(path: Path, indices_for) -> np.ndarray | None:
    """PyAV reader of :func:`read_clip`; None when the stream has B-frames.

        packets in decode order ─┬─ keyframe: forget the packets buffered so far
                                 ├─ buffer the packet (at most one GOP is held)
                                 └─ needed frame: decode the buffer, convert this frame only

    Without B-frames the n-th packet is the n-th frame, so indices need no timestamps, no
    seeking and no index of the file; frames between a keyframe and a needed frame are decoded
    (they are references) but never converted to RGB. Decoding stops after the last needed
    frame (plus ``REORDER_CHECK`` packets demuxed, not decoded, to confirm the order).
    """
    import av

    quiet_video_libraries()
    _check_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per DataLoader worker
            num_frames = stream.frames
            if num_frames <= 0:  # no frame count in the header (webm/mkv): let decord count
                return None
            indices = np.asarray(indices_for(num_frames), dtype=np.int64).reshape(-1)
            if indices.size == 0:
                return np.empty((0, stream.height, stream.width, 3), np.uint8)
            if indices.min() < 0 or indices.max() >= num_frames:
                raise VideoError(
                    f"{path}: frame index out of range 0..{num_frames - 1} "
                    f"(asked {indices.min()}..{indices.max()})"
                )
            unique, inverse = np.unique(indices, return_inverse=True)
            found = _decode_positions(container, stream, set(unique.tolist()), int(unique[-1]))
    except VideoError:
        raise
    except Exception as exc:  # FFmpeg errors carry no path: name the file here
        reason = getattr(exc, "strerror", None) or first_line(exc)
        raise VideoError(f"{path}: cannot decode frames ({reason})") from None
    if found is None:
        return None
    missing = [i for i in unique.tolist() if i not in found]
    if missing:
        raise VideoError(
            f"{path}: frames {missing[0]}..{missing[-1]} could not be decoded "
            f"(truncated or corrupt file?)"
        )
    frames = np.stack([found[i] for i in unique.tolist()])  # (U, H, W, 3)
    return frames[inverse.reshape(-1)]


def _decode_positions(container, stream, wanted: set[int], last: int) -> dict | None:
    """Frames at decode positions ``wanted`` as RGB arrays; None if pts are not increasing."""
    codec = stream.codec_context
    found: dict[int, np.ndarray] = {}
    wanted_pts: dict[int, int] = {}  # pts -> position of the needed frames met so far
    buffered: list = []  # packets since the last keyframe, not decoded yet (at most one GOP)
    position, previous_pts = -1, None

    def convert(frames) -> None:  # matched by pts: a decoder may hand frames out late
        for frame in frames:
            if frame.pts in wanted_pts:
                found[wanted_pts[frame.pts]] = frame.to_ndarray(format="rgb24")

    for packet in container.demux(stream):
        if packet.size == 0:  # end-of-stream marker
            continue
        position += 1
        if packet.pts is None or (previous_pts is not None and packet.pts <= previous_pts):
            return None  # reordered (B-frames) or untimed packets: positions are not frames
        previous_pts = packet.pts
        if position > last:
            if position > last + REORDER_CHECK:
                break
            continue
        if packet.is_keyframe:
            buffered = []
        buffered.append(packet)
        if position in wanted:
            wanted_pts[packet.pts] = position
            for pending in buffered:
                convert(codec.decode(pending))
            buffered = []
    if len(found) < len(wanted_pts):
        convert(codec.decode(None))  # drain frames the decoder still holds
    return found
