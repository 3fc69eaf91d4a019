"""Video files on the torch-free floor: codec settings, writing, probing and the decord check.

``prepare`` re-encodes with :func:`x264_options`, the synthetic and benchmark videos are written
with :func:`write_video`, every input is probed with :func:`probe_video` (PyAV), and
:func:`decord_frame_count` checks that decord can read what we wrote. Reading clips for training
is ``videoglore.data.video`` (above this floor), which opens decord readers with
:func:`open_decord`. :func:`quiet_video_libraries` keeps FFmpeg's and decord's own messages off
the terminal in every process that decodes; :func:`library_error` turns their exceptions into
the reason of our one-line errors. No torch here.

Who is at fault when a library call fails (``data_prep.faults``): :func:`reading_error` tells a
file that could not be read (permission, I/O error, network file system;
:class:`~data_prep.errors.UnreadableError`, never a verdict) from one that was read and found bad
(:class:`~data_prep.errors.VideoError`), and :func:`mp4_output` turns whatever PyAV wraps a
failed write in into an :class:`~data_prep.errors.OutputError`.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from data_prep.errors import UnreadableError, VideoError, VideogloreError
from data_prep.faults import READ_ERRNOS, read_failed, write_failure
from data_prep.files import atomic_open, first_line, output_error, temp_path


def x264_options(
    keyframe_interval: int,
    crf: int,
    preset: str = "veryfast",
    tune: str = "fastdecode",
    mbtree: bool = True,
) -> dict[str, str]:
    """libx264 options of every file we write: a keyframe exactly every ``keyframe_interval``
    frames (no scene-cut keyframes) and no B-frames, so a random clip never needs more than one
    GOP decoded per frame and decode order is presentation order (the PyAV reader's fast path).
    ``tune="fastdecode"`` (no CABAC, no deblocking) makes decoding ~1.8x faster for ~35 % larger
    files (benchmarks/RESULTS.md, "Data loading"); ``""`` keeps x264's default tuning.
    ``mbtree=False`` turns x264's macroblock-tree rate control off: with it, identical frames
    were measured to come out as different bytes now and then (its SIMD code; never with it off,
    nor with ``asm=0``), which generated test and demo clips cannot have.
    """
    k = int(keyframe_interval)
    options = {
        "crf": str(crf),
        "preset": preset,
        "bf": "0",
        "x264-params": f"keyint={k}:min-keyint={k}:scenecut=0" + ("" if mbtree else ":mbtree=0"),
    }
    if tune:
        options["tune"] = tune
    return options


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    fps: float
    width: int  # of the decoded frames, as stored (before ``rotation``)
    height: int
    duration: float
    rotation: int = 0  # degrees clockwise that turn the decoded frames upright (display matrix)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as the video is shown."""
        return upright_size(self, self.rotation)


def probe_video(path: str | Path) -> VideoInfo:
    """Open with PyAV and require a video stream and one decodable frame.

    Returns the frame count (the header's; packets counted when the header has none, as in
    webm/mkv) and what :func:`video_info` reads: frame rate, size, rotation, duration.

    Raises:
        UnreadableError: the file could not be read (permission, I/O error, ...).
        VideoError: naming the file and what is wrong with it.
    """
    path = Path(path)
    with open_video(path) as (container, stream):
        try:
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path}: no decodable frame")
            count = stream.frames
            if count <= 0:  # webm/mkv headers carry no frame count: count packets (no decode)
                container.seek(0)
                count = sum(1 for p in container.demux(stream) if p.size)
            return video_info(container, stream, first, count)
        except VideoError:
            raise
        except Exception as exc:  # PyAV raises many FFmpeg error types
            raise reading_error(path, exc) from None


def probe_rotation(path: str | Path) -> int:
    """The rotation (:func:`rotation_of`) of a video, decoding only up to its first frame.

    Raises:
        UnreadableError, VideoError: as :func:`probe_video`.
    """
    path = Path(path)
    with open_video(path) as (container, stream):
        try:
            first = next(container.decode(stream), None)
        except Exception as exc:
            raise reading_error(path, exc) from None
        if first is None:
            raise VideoError(f"{path}: no decodable frame")
        return rotation_of(first)


@contextmanager
def open_video(path: str | Path) -> Iterator[tuple]:
    """``(container, stream)``: the PyAV input container of ``path`` and its first video stream.

    The one place a source is opened (probing it, re-encoding it).

    Raises:
        UnreadableError: the file could not be read (permission, I/O error, ...).
        VideoError: missing, empty, not a container PyAV reads, no video stream.
    """
    import av

    path = Path(path)
    check_video_file(path)
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise reading_error(path, exc) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        yield container, container.streams.video[0]


def video_info(container, stream, first, frame_count: int) -> VideoInfo:
    """What a video's headers and its first decoded frame say: the frame rate
    (:func:`stream_rate`), the frame size and rotation (:func:`rotation_of`), the duration (the
    stream's, else the container's, else ``frame_count`` / rate)."""
    import av

    rate = stream_rate(stream)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = frame_count / float(rate)
    rotation = rotation_of(first)
    return VideoInfo(frame_count, float(rate), first.width, first.height, duration, rotation)


def reading_error(path: Path, exc: BaseException) -> VideoError:
    """The error for a PyAV failure while reading ``path``: UnreadableError when the file could
    not be read (:func:`read_failed`), else VideoError (read and found bad)."""
    if read_failed(exc):
        return UnreadableError(f"{path}: cannot read it ({library_error(exc)})")
    return VideoError(f"{path}: cannot open or decode ({library_error(exc)})")


def check_video_file(path: Path) -> None:
    """Raise VideoError naming ``path`` when it is missing, not a file or empty (before any
    library sees it); UnreadableError when it cannot even be looked at (no permission)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UnreadableError(f"{path}: file not found") from None
    except OSError as exc:
        raise UnreadableError(f"{path}: cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise VideoError(f"{path}: file not found")
    if st.st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")


def upright_size(frame, rotation: int) -> tuple[int, int]:
    """(width, height) of ``frame`` (anything with a width and a height) once turned
    ``rotation`` degrees: swapped by a quarter turn."""
    if rotation % 180:
        return frame.height, frame.width
    return frame.width, frame.height


def rotation_of(frame) -> int:
    """Degrees clockwise (0, 90, 180 or 270) that turn a decoded frame upright.

    The display matrix (mp4 ``tkhd``; a phone filmed upright stores its frames sideways and says
    so there) reaches the frame as side data; PyAV's ``VideoFrame.rotation`` is FFmpeg's
    ``av_display_rotation_get``, the angle the matrix turns the frame *counter-clockwise*, so a
    matrix of -90 means: turn 90 degrees clockwise (what ``ffmpeg`` does when it autorotates).
    Angles between quarter turns round to the nearest one; mirroring is ignored.
    """
    return round(-float(frame.rotation) / 90) % 4 * 90


def stream_rate(stream) -> Fraction:
    """A stream's frame rate as a fraction (25 when the header has none), denominator <= 1001."""
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return Fraction(rate).limit_denominator(1001)


def add_h264_stream(
    container,
    rate: Fraction,
    width: int,
    height: int,
    keyframe_interval: int,
    crf: int,
    preset: str = "veryfast",
    tune: str = "fastdecode",
    mbtree: bool = True,
):
    """The H.264 output stream of every file we write (prepared and generated videos alike).

    A keyframe exactly every ``keyframe_interval`` frames and no B-frames (:func:`x264_options`):
    the cost of a random clip is bounded and decode order is presentation order. One x264 thread:
    a prepare worker owns one core, and threaded x264 with fastdecode is not bit-exact.
    """
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = 1 / rate
    stream.codec_context.thread_count = 1
    stream.codec_context.gop_size = keyframe_interval
    stream.options = x264_options(keyframe_interval, crf, preset, tune, mbtree)
    return stream


def decord_frame_count(path: str | Path) -> int:
    """Open with decord and decode its first and last frame; returns decord's frame count.

    Both readers of ``videoglore.data.video`` must be able to read a prepared file, and decord
    is the stricter of the two about containers and frame counts.

    Raises:
        UnreadableError: the file could not be read (decord says only in words: its message
            holds the system's text of a read failure, e.g. "Permission denied").
        VideoError: naming the file when decord cannot open it or decode those frames.
    """
    path = Path(path)
    try:
        with _decord_log_dropped():
            reader = open_decord(path)
            count = len(reader)
            if count == 0:
                raise VideoError(f"{path}: decord finds no frames")
            reader.get_batch([0, count - 1])
            reader.seek(0)  # release decord's buffered frames (dmlc/decord#208)
    except VideoError:
        raise
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError variants
        words = [os.strerror(code) for code in READ_ERRNOS if os.strerror(code) in str(exc)]
        if read_failed(exc) or words:
            reason = words[0] if words else library_error(exc)
            raise UnreadableError(f"{path}: cannot read it ({reason})") from None
        raise VideoError(f"{path}: decord cannot read it ({library_error(exc)})") from None
    return count


def open_decord(path: str | Path, num_threads: int = 1):
    """A ``decord.VideoReader`` for ``path``, opened without library noise on the terminal.

    decord's own exception is raised unchanged when the file cannot be opened (the caller
    names the file in its one-line error).
    """
    import decord

    quiet_video_libraries()
    with _decord_log_dropped():
        return decord.VideoReader(str(path), num_threads=num_threads)


def quiet_video_libraries() -> None:
    """Keep FFmpeg's own messages (``moov atom not found``, ``[h264 @ 0x...] error while
    decoding MB``) off the terminal, for PyAV and, once imported, decord (each ships its own
    FFmpeg and logs straight to file descriptor 2). Our VideoError says what went wrong, in one
    line naming the file. Each library is set once per process; later calls cost a set lookup.
    """
    if "av" not in _QUIETED:
        import av.logging

        try:
            av.logging.set_level(None)  # PyAV >= 13: no FFmpeg log callback at all
        except (TypeError, ValueError):  # older PyAV: only what stops the process
            av.logging.set_level(av.logging.PANIC)
        _QUIETED.add("av")
    decord = sys.modules.get("decord")
    if decord is not None and "decord" not in _QUIETED:
        decord.logging.set_level(decord.logging.QUIET)
        _QUIETED.add("decord")


_QUIETED: set[str] = set()  # libraries quieted in this process
_DECORD_LOG_LINE = re.compile(rb"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[11:39:13] x.cc:83: ..."
_FD2_LOCK = threading.RLock()  # decord_frame_count nests open_decord
_fd2_depth = 0  # nested blocks share the outermost one's sink


@contextmanager
def _decord_log_dropped() -> Iterator[None]:
    """Drop the lines decord's C++ logger writes to file descriptor 2 inside the block.

    That logger (``video_reader.cc:83: ERROR opening ...`` before every failed open) has no
    switch, and C++ writes below Python's ``sys.stderr``, so fd 2 itself is pointed at a temp
    file for the block; every other line written meanwhile is passed on afterwards.
    """
    global _fd2_depth
    with _FD2_LOCK:
        if _fd2_depth:  # already redirected by an enclosing block
            yield
            return
        sys.stderr.flush()
        saved = os.dup(2)
        _fd2_depth += 1
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(saved, 2)
                    sink.seek(0)
                    lines = sink.read().splitlines(keepends=True)
                    kept = b"".join(line for line in lines if not _DECORD_LOG_LINE.match(line))
                    if kept:
                        os.write(2, kept)
        finally:
            _fd2_depth -= 1
            os.close(saved)


_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # "[11:39:13] src/x.cc:292: "


def library_error(exc: BaseException) -> str:
    """One-line reason from a PyAV or decord exception: FFmpeg's error text (without the errno
    number and file name it carries), decord's message without its ``[time] file.cc:line:``
    prefixes. The caller names the file."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return _DECORD_PREFIX.sub("", first_line(exc)).strip() or type(exc).__name__


@contextmanager
def mp4_output(path: str | Path, temp_dir: str | Path | None = None) -> Iterator:
    """An mp4 ``av`` output container writing ``path`` atomically (:func:`atomic_open`).

    Any failure to write is an :class:`~data_prep.errors.OutputError` naming the folder and the
    cause, however PyAV wraps it: an ``OSError`` of the file object reaches us as itself, or as
    the context of a ``PyAVCallbackError`` when the trailer written on the way out fails too.
    The temp file is removed. Our own errors raised inside the block pass unchanged.
    """
    import av

    path = Path(path)
    try:
        with (
            atomic_open(path, "wb", temp_dir=temp_dir) as f,
            av.open(f, mode="w", format="mp4") as container,
        ):
            yield container
    except VideogloreError:
        raise
    except Exception as exc:
        cause = write_failure(exc, (path.name, temp_path(path).name))
        if cause is None:
            raise
        raise output_error(cause, path) from None


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 25.0,
    keyframe_interval: int = 8,
    crf: int = 23,
    tune: str = "fastdecode",
    reproducible: bool = True,
    display_rotation: int = 0,
) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as an H.264 .mp4, atomically (temp file + rename).

    Height and width must be even (yuv420p). ``keyframe_interval`` is the GOP length: short GOPs
    make random clip access cheap (see the data benchmark); the encoder settings are
    :func:`x264_options`, those of prepared videos, except that ``reproducible`` (generated test,
    demo and benchmark clips) turns x264's macroblock tree off so that the same frames always
    give the same bytes; ``reproducible=False`` writes exactly as ``prepare`` does.
    ``display_rotation`` (degrees clockwise, as :func:`rotation_of` reads them) goes into the
    display matrix, as a phone writes a video it recorded turned (test and benchmark videos).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 frames (T, H, W, 3), got {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 needs even height and width, got {height}x{width}")
    rate = Fraction(fps).limit_denominator(1001)
    with mp4_output(path) as container:
        stream = add_h264_stream(
            container,
            rate,
            width,
            height,
            keyframe_interval,
            crf,
            tune=tune,
            mbtree=not reproducible,
        )
        if display_rotation:
            stream.set_display_rotation(-display_rotation)  # PyAV >= 18: the matrix's angle is
            # counter-clockwise (see rotation_of)
        for frame in frames:
            packet_list = stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
            container.mux(packet_list)
        container.mux(stream.encode())
