"""Check one video with PyAV, re-encode it to a fixed short side, verify the result with decord.

Everything here runs inside a worker process, one video per call of :func:`process_video`,
which never raises for a bad video: it returns a :class:`VideoResult` with ``status="broken"``
and the reason, so one bad file never stops a 260k-video run. Only a file that was read and
found bad is ``"broken"``; one that could not be read (no permission, I/O error, network file
system) is ``"unreadable"`` and one deleted since it was listed ``"missing"``: neither is a
verdict, the ledger forgets them and the next run tries again. A failure to write the output
is not the video's fault: it raises :class:`~data_prep.errors.OutputError` and stops the run.

A source whose display matrix says it is shown turned (phones store portrait video sideways) is
re-encoded upright: each frame is scaled in its stored orientation, then turned
(:func:`upright_frame`); the list gives the upright size. With ``--no-reencode`` the list
records the rotation instead, for the loaders to apply.

Re-encoding (decode → ``reformat(width, height)`` → libx264, no audio, same fps) is the one place
that transcodes; :func:`data_prep.codec.write_video` is for whole in-memory clips and would
hold a full 10 s Kinetics clip in RAM, so we stream frame by frame instead. Short keyframe
intervals matter because training reads one random clip per video: either reader (PyAV or
decord) must decode from the keyframe before each kept frame, so a 250-frame GOP costs up to 250
decoded frames per kept frame, an 8-frame GOP at most 8, all-intra files (the default) only the
kept frames.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_prep.codec import (
    VideoInfo,
    add_h264_stream,
    decord_frame_count,
    library_error,
    mp4_output,
    open_video,
    probe_rotation,
    probe_video,
    reading_error,
    rotation_of,
    stream_rate,
    upright_size,
    video_info,
)
from data_prep.errors import OutputError, UnreadableError, VideoError
from data_prep.faults import read_failed
from data_prep.files import first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeSettings:
    reencode: bool = True
    short_side: int = 256  # target length of the shorter side; never upscaled
    keyframe_interval: int = 1  # frames between keyframes (GOP length); 1 = all-intra
    crf: int = 23  # x264 constant rate factor (lower = better quality, bigger files)
    preset: str = "veryfast"
    tune: str = "fastdecode"  # x264 tuning; "fastdecode" ~1.8x faster decoding, ~35 % bigger
    threads: int = 1  # codec threads per worker; workers already use every core

    def signature(self) -> dict:
        """Fields that change the output file (a change means re-doing finished videos)."""
        if not self.reencode:
            return {"reencode": False}
        sig = asdict(self)
        sig.pop("threads")
        return sig


@dataclass
class VideoResult:
    """What checking one video found; one line of the resume ledger."""

    key: str  # "videos/<split>/<class>/<name>.mp4", the output path relative to OUT
    source: str
    status: str  # "ok", "broken" (read, found bad); not verdicts: "unreadable", "missing"
    reason: str = ""
    frame_count: int = 0  # decord's count of the file the list points to
    fps: float = 0.0
    width: int = 0  # upright, as the list gives it (the re-encoded file's size)
    height: int = 0
    rotation: int = 0  # degrees clockwise the source's frames need (applied when re-encoding)
    duration: float = 0.0  # seconds, as probed
    seconds: float = 0.0  # processing time
    source_size: int = -1  # the source as it was before it was read (-1: not seen); a rerun
    source_mtime_ns: int = -1  # redoes the video when these have changed


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``short_side``, never upscaled, both even
    (yuv420p needs even sizes; odd sides round down)."""
    scale = min(1.0, short_side / min(width, height))
    out_w = max(2, int(round(width * scale / 2)) * 2)
    out_h = max(2, int(round(height * scale / 2)) * 2)
    if scale == 1.0:  # no resize: only drop the odd pixel, never grow
        out_w, out_h = max(2, width - width % 2), max(2, height - height % 2)
    return out_w, out_h


def transcode_video(
    source: str | Path, output: str | Path, tmp_dir: str | Path, settings: EncodeSettings
) -> VideoInfo:
    """Re-encode ``source`` to H.264 at ``settings.short_side``, upright.

    Returns what :func:`~data_prep.codec.probe_video` would (the source is opened once), with
    the frames written as the count. The file appears at ``output`` only when complete
    (:func:`~data_prep.codec.mp4_output`, its temp file in ``tmp_dir``). A decode error part-way
    keeps the frames decoded so far (a truncated download still yields a usable clip); a file
    with no decodable frame raises VideoError, one that cannot be read UnreadableError. Any
    failure to write (disk full, permission, a file in the way), however PyAV wraps it, raises
    OutputError: it says nothing about the video.
    """
    from av.video.frame import PictureType
    from av.video.reformatter import VideoReformatter

    source = Path(source)
    written = 0
    with open_video(source) as (src, in_stream):
        in_stream.thread_count = settings.threads
        frames = _decoded_frames(src, in_stream, source)
        first = next(frames, None)
        if first is None:
            raise VideoError(f"{source}: no decodable frame")
        rotation = rotation_of(first)
        out_w, out_h = output_size(*upright_size(first, rotation), settings.short_side)
        scaled = (out_h, out_w) if rotation % 180 else (out_w, out_h)  # the stored orientation
        scaler = VideoReformatter()  # one swscale context for the video, not one per frame
        with mp4_output(output, tmp_dir) as dst:
            out = add_h264_stream(
                dst,
                stream_rate(in_stream),
                out_w,
                out_h,
                settings.keyframe_interval,
                settings.crf,
                settings.preset,
                settings.tune,
            )
            for frame in itertools.chain([first], frames):
                image = scaler.reformat(
                    frame,
                    width=scaled[0],
                    height=scaled[1],
                    format="yuv420p",
                    interpolation="AREA",
                    threads=settings.threads,  # swscale would start one thread per core
                )
                image = upright_frame(image, rotation)
                image.pts, image.time_base = written, out.codec_context.time_base
                image.pict_type = PictureType.NONE  # the source's I/P choice must not force ours
                dst.mux(out.encode(image))
                written += 1
            dst.mux(out.encode())
        return video_info(src, in_stream, first, written)


def upright_frame(frame, rotation: int):
    """A yuv420p ``frame`` turned ``rotation`` degrees clockwise (a new frame; the same frame
    for 0). Each plane is turned on its own: an exact permutation of the pixels, as FFmpeg's
    ``transpose`` filter does when ``ffmpeg`` autorotates."""
    if not rotation:
        return frame
    import av

    turned = av.VideoFrame(*upright_size(frame, rotation), "yuv420p")
    for src, dst in zip(frame.planes, turned.planes, strict=True):
        stored = np.frombuffer(src, np.uint8).reshape(-1, src.line_size)[: src.height, : src.width]
        target = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
        # np.rot90 turns anticlockwise for k > 0: k = -1 is a quarter turn clockwise
        target[: dst.height, : dst.width] = np.rot90(stored, -rotation // 90)
    return turned


def _decoded_frames(container, stream, source: Path):
    """The decodable frames of ``stream``; stops quietly at corrupt data after the first frame.

    Decoding is reading the input: its errors are caught here, so that any ``OSError`` met
    while the output is open is the output's. A read that fails (I/O error, a network file
    system gone) raises UnreadableError: the frames so far are not all the video has.
    """
    frames, count = container.decode(stream), 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # truncated/corrupt data: keep what we have
            if count == 0 or read_failed(exc):
                raise reading_error(source, exc) from None
            reason = library_error(exc)
            log.warning("%s: decode stopped after %d frames (%s)", source, count, reason)
            return
        count += 1
        yield frame


def process_video(
    video: tuple[str, str], settings: EncodeSettings, out_dir: str, tmp_dir: str
) -> VideoResult:
    """Probe → (re-encode to ``out_dir/key``) → verify one ``(key, source)`` video.

    Never raises for a bad video (``status="broken"`` and the reason; ``"unreadable"`` when the
    source cannot be read, ``"missing"`` when it is gone since it was listed); raises
    OutputError when the output cannot be written, which the pool reports to the main process
    as an exception. ``tmp_dir`` holds the partial output until it is complete.
    """
    key, source = video
    output = os.path.join(out_dir, key) if settings.reencode else None
    start = time.perf_counter()
    try:
        st = os.stat(source)  # before reading it: a change while it is read shows at the rerun
    except FileNotFoundError:
        return VideoResult(key, source, "missing", _DELETED)
    except OSError as exc:
        return VideoResult(key, source, "unreadable", f"cannot read it ({exc.strerror})")
    result = VideoResult(key, source, "broken")
    result.source_size, result.source_mtime_ns = st.st_size, st.st_mtime_ns
    try:
        if output is None:
            info = probe_video(source)
            result.width, result.height = info.upright_size
        else:  # it probes as it decodes: one open of the source
            info = transcode_video(source, output, tmp_dir, settings)
            result.width, result.height = output_size(*info.upright_size, settings.short_side)
        result.fps, result.duration, result.rotation = info.fps, info.duration, info.rotation
        result.frame_count = decord_frame_count(output or source)
        result.status = "ok"
    except OutputError:
        raise  # not a property of the video: the run stops, nothing is recorded for it
    except UnreadableError as exc:
        result.status, result.reason = _not_read(source, str(exc).replace(f"{source}: ", ""))
    except VideoError as exc:
        result.reason = str(exc).replace(f"{source}: ", "").replace(f"{output}: ", "")
    except Exception as exc:  # anything unexpected is still a per-video failure
        if read_failed(exc):
            result.status, result.reason = _not_read(source, f"cannot read it ({exc})")
        else:
            log.exception("%s: unexpected error", source)
            result.reason = f"unexpected error ({type(exc).__name__}: {first_line(exc)})"
    result.seconds = time.perf_counter() - start
    return result


_DELETED = "no file found (deleted during the run)"


def _not_read(source: str, reason: str) -> tuple[str, str]:
    """(status, reason) of a source that could not be read: "missing" when it is gone now."""
    try:
        os.stat(source)
    except FileNotFoundError:
        return "missing", _DELETED
    except OSError:
        pass
    return "unreadable", reason


def source_rotation(video: tuple[str, str]) -> tuple[str, int | None]:
    """``(key, rotation)`` of a ``(key, source)`` video (:func:`~data_prep.codec.probe_rotation`);
    None when it cannot be probed: the video is redone and its worker says what is wrong."""
    key, source = video
    try:
        return key, probe_rotation(source)
    except VideoError:
        return key, None
