"""Decoding the frames of a clip (writing videos is ``data_prep/codec.py``).

:func:`decode_clip` hands every needed frame, once, to a callback ``put(frame, slots)`` of the
transforms (transforms.py), which convert only the part of it they keep::

    indices_for(video length) ─▶ frame indices (any shape, repeats allowed)
      pyav:   packets in decode order ─┬─ keyframe: forget the packets buffered so far
                                       ├─ buffer the packet (at most one GOP is held)
                                       └─ needed frame: decode the buffer ─▶ put(VideoFrame, slots)
      decord: get_batch(sorted unique indices) ─▶ put(RGB array, slots)

``frame`` is a PyAV ``VideoFrame`` as decoded (YUV, nothing converted) or a uint8 (H, W, 3) RGB
array (decord); ``slots`` are the positions in the flattened indices that this frame fills.

* ``"pyav"`` (default): without B-frames the n-th packet is the n-th frame, so indices need no
  timestamps, no seeking and no index of the file; frames between a keyframe and a needed frame
  are decoded (they are references) but never converted. With one keyframe per frame
  (``prepare --keyframe-interval 1``) only the needed frames are decoded at all. Streams with
  B-frames (decode order != presentation order) or without a frame count fall back to decord.
* ``"decord"``: decord's random access by frame index; decord converts every frame it decodes
  to RGB, including the frames decoded only to reach a target after a keyframe. Frames are
  read in batches of at most ``DECORD_BATCH``, so a long request (``predict --window`` over a
  long file) never holds all its RGB frames at once.

Frame indices are presentation-order positions in both readers, so they return the same frames.
Every library runs single-threaded here (libavcodec ``thread_count=1``, decord
``num_threads=1``; swscale in pixels.py): a DataLoader worker owns one core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_prep.codec import check_video_file, library_error, open_decord, quiet_video_libraries
from videoglore.data import pixels
from videoglore.errors import VideoError

log = logging.getLogger(__name__)

READERS = ("pyav", "decord")
REORDER_CHECK = 16  # packets demuxed past the last needed one to confirm there are no B-frames
CODEC_THREADS = 1  # libavcodec / decord decoding threads per reader: one core per worker
DECORD_BATCH = 64  # frames per decord get_batch: 64 RGB frames of 340x256 are 17 MB

Put = Callable[[object, list[int]], None]  # put(frame, slots)


def open_video(path: str | Path, num_threads: int = CODEC_THREADS):
    """Open ``path`` with decord and check that it has frames.

    Raises:
        VideoError: naming the file and the reason when it is missing, empty or undecodable.
    """
    path = Path(path)
    check_video_file(path)
    try:
        reader = open_decord(path, num_threads)
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError variants
        raise VideoError(f"{path}: cannot open video ({library_error(exc)})") from None
    if len(reader) == 0:
        raise VideoError(f"{path}: video has no frames")
    return reader


def open_pyav(path: str | Path):
    """Open ``path`` with PyAV; returns ``(container, stream)`` with a single-threaded decoder.

    The caller closes the container. libavcodec would otherwise start one thread per core in
    every DataLoader worker (frame threading), oversubscribing the machine.
    """
    import av

    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "NONE"
    stream.codec_context.thread_count = CODEC_THREADS
    return container, stream


def read_frames(
    path: str | Path, indices: np.ndarray | list[int], reader=None, rewind: bool = True
) -> np.ndarray:
    """Decode the frames at ``indices`` with decord; returns uint8 (T, H, W, 3) RGB.

    ``reader``: an already opened decord reader of ``path``; without one, a fresh
    single-threaded reader is opened (one reader per item keeps memory bounded over long
    runs: decord's readers grow with use, dmlc/decord#1, #208). The reader is then seeked back
    to frame 0, which releases the frames decord keeps buffered after ``get_batch``
    (dmlc/decord#197, #208); ``rewind=False`` leaves it where it is, for a caller that reads
    on from there (the next batch then needs no seek back to its keyframe).
    """
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
        if rewind:
            reader.seek(0)
    except Exception as exc:  # decord's own error types
        raise VideoError(f"{path}: cannot decode frames ({library_error(exc)})") from None
    return frames


def decode_clip(
    path: str | Path,
    indices_for: Callable[[int], np.ndarray],
    put: Put,
    reader: str = "pyav",
    rotation: int = 0,
) -> None:
    """Decode the frames chosen by ``indices_for(video length)`` and hand each to ``put``.

    ``put(frame, slots)`` is called for every distinct index, in increasing index order, with the
    positions of that index in the flattened indices (a second pass after a failed seek hands
    frames again; they overwrite the first). Nothing stays open afterwards (one reader
    per call keeps memory bounded over long runs).

    Frames are handed over as stored: ``rotation`` (the list's, read from the file's display
    matrix by ``prepare``) is applied by the transforms. PyAV decodes the stored frames, but
    decord 0.6 applies the display matrix itself, so its frames are turned back by ``rotation``
    (anticlockwise) to the stored orientation: both readers give the transforms the same frames.

    Raises:
        VideoError: naming the file when it is missing, empty, undecodable or too short.
    """
    if reader not in READERS:
        raise ValueError(f"unknown video reader {reader!r}; choose from {READERS}")
    path = Path(path)
    put = _video_errors(put, path)
    if reader == "pyav" and _decode_pyav(path, indices_for, put):
        return
    # decord, or a stream the PyAV path cannot index (B-frames, no frame count)
    handle = open_video(path)
    indices = np.asarray(indices_for(len(handle)), dtype=np.int64).reshape(-1)
    unique, slots = _slots(indices)
    for begin in range(0, len(unique), DECORD_BATCH):
        end = begin + DECORD_BATCH
        last = end >= len(unique)
        frames = read_frames(path, unique[begin:end], reader=handle, rewind=last)  # upright
        for frame, where in zip(frames, slots[begin:end], strict=True):
            if rotation:  # np.rot90 turns anticlockwise: back to the stored frame
                frame = np.ascontiguousarray(np.rot90(frame, rotation // 90))
            put(frame, where)


def _video_errors(put: Put, path: Path) -> Put:
    """``put`` with its ValueError (the transform cannot use this frame: its size does not fit
    the list's, a buffer is too small) turned into a VideoError naming the file. Any other
    exception of ``put`` is a bug and propagates as it is, never taken for a bad video."""

    def checked(frame, slots: list[int]) -> None:
        try:
            put(frame, slots)
        except ValueError as exc:
            raise VideoError(f"{path}: {exc}") from None

    return checked


def read_clip(
    path: str | Path, indices_for: Callable[[int], np.ndarray], reader: str = "pyav"
) -> np.ndarray:
    """The frames chosen by ``indices_for`` as uint8 (indices.size, H, W, 3) RGB, in index order.

    Whole frames converted to RGB: for tools and tests. Training and testing use
    :func:`decode_clip` with the transforms, which convert only what they keep.
    """
    out: dict[int, np.ndarray] = {}  # slot -> frame (a fallback to decord overwrites)

    def put(frame, slots: list[int]) -> None:
        rgb = frame if isinstance(frame, np.ndarray) else to_rgb(frame)
        out.update((slot, rgb) for slot in slots)

    decode_clip(path, indices_for, put, reader)
    if not out:
        return np.empty((0, 0, 0, 3), np.uint8)
    return np.stack([out[slot] for slot in sorted(out)])


def to_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as uint8 (H, W, 3) RGB (swscale, single-threaded)."""
    return pixels.reformat(frame, format="rgb24").to_ndarray()


def _slots(indices: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
    """Sorted distinct indices and, for each, its positions in ``indices``."""
    unique, inverse = np.unique(indices, return_inverse=True)
    slots: list[list[int]] = [[] for _ in range(len(unique))]
    for position, k in enumerate(inverse.reshape(-1).tolist()):
        slots[k].append(position)
    return unique, slots


def _decode_pyav(path: Path, indices_for, put: Put) -> bool:
    """PyAV reader of :func:`decode_clip`; False when the stream needs decord (see module doc)."""
    import av

    quiet_video_libraries()
    check_video_file(path)
    try:
        container, stream = open_pyav(path)
        with container:
            length = stream.frames
            if length <= 0:  # no frame count in the header (webm/mkv): let decord count
                return False
            indices = np.asarray(indices_for(length), dtype=np.int64).reshape(-1)
            if indices.size == 0:
                return True
            if indices.min() < 0 or indices.max() >= length:
                raise VideoError(
                    f"{path}: frame index out of range 0..{length - 1} "
                    f"(asked {indices.min()}..{indices.max()})"
                )
            unique, slots = _slots(indices)
            wanted = dict(zip(unique.tolist(), slots, strict=True))
            grid = _time_grid(stream, length)
            found = _decode_positions(container, stream, wanted, put, grid) if grid else None
        if found is None:  # no constant frame rate after all: count packets from the start
            container, stream = open_pyav(path)
            with container:
                found = _decode_positions(container, stream, wanted, put, None)
    except (av.error.FFmpegError, OSError, EOFError, ValueError) as exc:
        # the file, not our code: put's ValueError is a VideoError already, and a bug in the
        # transforms (IndexError, TypeError, ...) must not pass as a bad video
        raise VideoError(f"{path}: cannot decode frames ({library_error(exc)})") from None
    if found is None:
        return False
    missing = [i for i in unique.tolist() if i not in found]
    if missing:
        raise VideoError(
            f"{path}: frames {missing[0]}..{missing[-1]} could not be decoded "
            f"(truncated or corrupt file?)"
        )
    return True


def _time_grid(stream, length: int) -> tuple[int, int] | None:
    """(pts of frame 0, pts step) when the header describes ``length`` equally long frames.

    Then frame n has pts ``start + n * step`` and the reader can seek straight to the keyframe
    before a clip (every packet it reads is checked against this grid). None otherwise.
    """
    rate, base, duration = stream.average_rate, stream.time_base, stream.duration
    if not rate or not base or duration is None:
        return None
    step = 1 / (rate * base)
    if step.denominator != 1 or duration != length * step:
        return None
    return int(stream.start_time or 0), int(step)


def _packets(container, stream):
    """Packets of ``stream`` in decode order; a seam for tests that count what is read."""
    return container.demux(stream)


def _decode(codec, packet) -> list:
    """One packet (None: drain) through the decoder; a seam for tests that count decodes."""
    return codec.decode(packet)


def _decode_positions(
    container, stream, wanted: dict[int, list[int]], put: Put, grid: tuple[int, int] | None
) -> set | None:
    """Hand the frames at decode positions ``wanted`` to ``put``; returns the positions found.

    The positions of the packets come from the time ``grid`` (constant frame rate:
    :func:`_grid_positions`) or from counting packets (:func:`_counted_positions`). None when
    their checks fail: positions are then not frames (the caller scans again or asks decord;
    their frames overwrite any handed over here).
    """
    last = max(wanted)
    if grid:
        positions = _grid_positions(container, stream, grid, min(wanted), last)
    else:
        positions = _counted_positions(container, stream, last)
    codec = stream.codec_context
    found: set[int] = set()
    wanted_pts: dict[int, int] = {}  # pts -> position of the needed frames met so far
    buffered: list = []  # packets since the last keyframe, not decoded yet (at most one GOP)

    def hand_over(frames) -> None:  # matched by pts: a decoder may hand frames out late
        for frame in frames:
            at = wanted_pts.pop(frame.pts, None)
            if at is not None:
                found.add(at)
                put(frame, wanted[at])

    try:
        for position, packet in positions:
            if packet.is_keyframe:
                buffered = []
            buffered.append(packet)
            if position in wanted:
                wanted_pts[packet.pts] = position
                for pending in buffered:
                    hand_over(_decode(codec, pending))
                buffered = []
    except _NotFrames:
        return None
    if wanted_pts:
        hand_over(_decode(codec, None))  # drain frames the decoder still holds
    return found


class _NotFrames(Exception):
    """The packets' positions cannot be taken for frame indices (see the position generators)."""


def _increasing(packets):
    """The packets with data; raises _NotFrames at a missing or non-increasing pts (decode order
    is then not presentation order: B-frames, or a broken header)."""
    previous = None
    for packet in packets:
        if packet.size == 0:  # end-of-stream marker
            continue
        if packet.pts is None or (previous is not None and packet.pts <= previous):
            raise _NotFrames
        previous = packet.pts
        yield packet


def _grid_positions(container, stream, grid: tuple[int, int], first: int, last: int):
    """(position, packet) from ``first``'s keyframe to ``last``, positions read off the grid.

    Seeks to the keyframe before frame ``first``; every packet must sit on the grid
    (``pts = start + position * step``), one after the other, so decode order is presentation
    order up to ``last``. Raises _NotFrames otherwise.
    """
    start, step = grid
    container.seek(start + first * step, stream=stream, backward=True)
    position = None  # of the packet before; None until the seek's keyframe
    for packet in _increasing(_packets(container, stream)):
        at, off = divmod(packet.pts - start, step)
        if position is None:  # landed: a keyframe at or before the first wanted frame
            if not (packet.is_keyframe and at <= first):
                raise _NotFrames
            position = at - 1
        if off or at != position + 1:
            raise _NotFrames
        position = at
        if position > last:
            return
        yield position, packet


def _counted_positions(container, stream, last: int):
    """(position, packet) from the start to ``last``, the n-th packet being frame n.

    Reads ``REORDER_CHECK`` packets past ``last`` so that increasing pts rule out B-frames;
    raises _NotFrames when they do not.
    """
    for position, packet in enumerate(_increasing(_packets(container, stream))):
        if position > last + REORDER_CHECK:
            return
        if position <= last:
            yield position, packet
