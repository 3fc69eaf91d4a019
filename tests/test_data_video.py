"""The readers: PyAV against decord on the same files, threads, decoding work, fallback, errors."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest
from av.codec.context import ThreadType

from data_prep.codec import write_video
from videoglore.data import video
from videoglore.data.video import decode_clip, open_pyav, read_clip, read_frames
from videoglore.errors import VideoError


def moving_video(num_frames: int = 40, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (N, H, W, 3): a bright square moving over a gradient, so frames differ."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frames[t] = np.stack([x * 3, y * 4, np.full_like(x, 60)], -1).astype(np.uint8)
        frames[t, 8:24, t : t + 16] = (250, 250, 20)
    return frames


@pytest.mark.parametrize("gop", [1, 4, 8, 250])
def test_pyav_matches_decord(tmp_path, gop):
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(), keyframe_interval=gop)
    indices = np.array([[3, 3, 11, 19], [0, 39, 7, 8]])  # repeats, unsorted, first and last
    pyav = read_clip(path, lambda n: indices, reader="pyav")
    decord = read_clip(path, lambda n: indices, reader="decord")
    assert pyav.shape == decord.shape == (8, 48, 64, 3) and pyav.dtype == np.uint8
    assert np.abs(pyav.astype(int) - decord.astype(int)).mean() < 3
    direct = read_frames(path, indices.reshape(-1))  # plain decord, frame by frame order
    assert np.abs(pyav.astype(int) - direct.astype(int)).mean() < 3
    assert not np.array_equal(pyav[0], pyav[2])  # different frames really differ


def test_pyav_sees_frame_count(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(24))
    seen = []
    read_clip(path, lambda n: seen.append(n) or np.array([n - 1]), reader="pyav")
    assert seen == [24]


def test_b_frames_fall_back_to_decord(tmp_path):
    path = tmp_path / "b.mp4"
    frames = moving_video(32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bf": "3", "crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    indices = np.array([1, 2, 5, 30])
    pyav = read_clip(path, lambda n: indices, reader="pyav")
    decord = read_clip(path, lambda n: indices, reader="decord")
    assert np.abs(pyav.astype(int) - decord.astype(int)).mean() < 3
    assert np.abs(pyav.astype(int) - frames[indices].astype(int)).mean() < 12


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_errors_name_the_file(tmp_path, reader):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoError, match="garbage.mp4"):
        read_clip(bad, lambda n: np.arange(2), reader=reader)
    with pytest.raises(VideoError, match="missing.mp4.*not found"):
        read_clip(tmp_path / "missing.mp4", lambda n: np.arange(2), reader=reader)
    good = tmp_path / "short.mp4"
    write_video(good, moving_video(10))
    with pytest.raises(VideoError, match="short.mp4.*out of range"):
        read_clip(good, lambda n: np.array([0, n + 5]), reader=reader)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "cut.mp4"
    write_video(path, moving_video(40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4"):
        read_clip(path, lambda n: np.array([0, 39]), reader="pyav")


def test_unknown_reader(tmp_path):
    with pytest.raises(ValueError, match="unknown video reader"):
        read_clip(tmp_path / "x.mp4", lambda n: np.arange(1), reader="opencv")


def test_pyav_decoder_is_single_threaded(tmp_path):
    """libavcodec would start one thread per core in every DataLoader worker (issue 13.1)."""
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(8))
    container, stream = open_pyav(path)
    with container:
        assert stream.codec_context.thread_count == 1
        assert stream.codec_context.thread_type == ThreadType.NONE
        next(container.decode(stream))  # the settings survive opening the decoder


def test_decord_reader_is_single_threaded(tmp_path, monkeypatch):
    import decord

    path = tmp_path / "v.mp4"
    write_video(path, moving_video(8))
    seen = []
    real = decord.VideoReader
    monkeypatch.setattr(decord, "VideoReader", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    read_clip(path, lambda n: np.array([1, 5]), reader="decord")
    assert seen and all(kw["num_threads"] == 1 for kw in seen)


def test_every_swscale_call_is_single_threaded(tmp_path, monkeypatch):
    """All colour conversions of the data path go through pixels.reformat with threads=1."""
    from av.video.reformatter import VideoReformatter

    from videoglore.data import pixels
    from videoglore.data.transforms import EvalViews, TrainClip

    class Spy:
        def __init__(self):
            self.calls, self.real = [], VideoReformatter()

        def reformat(self, frame, **kwargs):
            self.calls.append(kwargs)
            return self.real.reformat(frame, **kwargs)

    spy = Spy()
    monkeypatch.setattr(pixels, "_reformatters", {os.getpid(): spy})
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(24))
    read_clip(path, lambda n: np.array([1, 5]))
    clip = TrainClip(2, 32, (40, 48), True, np.random.default_rng(0))
    decode_clip(path, lambda n: np.array([2, 9]), clip.put)
    views = EvalViews(2, 2, 40, 32, 3)
    decode_clip(path, lambda n: np.array([[1, 3], [10, 12]]), views.put)
    assert len(spy.calls) == 2 + 2 + 4
    assert all(call["threads"] == 1 for call in spy.calls)


def test_decode_clip_hands_each_frame_over_once_with_its_slots(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(), keyframe_interval=4)
    indices = np.array([[9, 3], [3, 30]])
    for reader in ("pyav", "decord"):
        calls: list = []
        decode_clip(path, lambda n: indices, lambda f, s, seen=calls: seen.append((f, s)), reader)
        assert [slots for _, slots in calls] == [[1, 2], [0], [3]]  # frames 3, 9, 30
        heights = {f.shape[0] if isinstance(f, np.ndarray) else f.height for f, _ in calls}
        assert heights == {48}
    frames = read_clip(path, lambda n: indices)
    assert frames.shape == (4, 48, 64, 3) and np.array_equal(frames[1], frames[2])


@pytest.mark.parametrize("gop, decodes", [(1, 4), (4, 2 + 1 + 3 + 4), (8, 2 + 1 + 3 + 8)])
def test_pyav_decodes_only_what_the_keyframes_require(tmp_path, monkeypatch, gop, decodes):
    """All-intra files (keyframe interval 1) decode the kept frames only (issue 13.3)."""
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(), keyframe_interval=gop)
    with av.open(str(path)) as container:
        keys = [p.is_keyframe for p in container.demux(container.streams.video[0]) if p.size]
    assert keys == [i % gop == 0 for i in range(40)]  # x264 keeps the interval, also at 1
    count = []
    real = video._decode
    monkeypatch.setattr(video, "_decode", lambda c, p: count.append(p) or real(c, p))
    frames = read_clip(path, lambda n: np.array([1, 8, 11, 23]))
    packets = [p for p in count if p is not None]
    assert len(packets) == decodes and frames.shape[0] == 4


def count_demuxed(monkeypatch) -> list:
    seen: list = []
    real = video._packets
    monkeypatch.setattr(video, "_packets", lambda c, s: (seen.append(p) or p for p in real(c, s)))
    return seen


@pytest.mark.parametrize("gop", [1, 4])
def test_pyav_seeks_to_the_keyframe_before_the_clip(tmp_path, monkeypatch, gop):
    """Constant-rate files: no packet before the first needed frame's keyframe is read, none
    after the last needed one but the one that ends the scan."""
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(), keyframe_interval=gop)
    seen = count_demuxed(monkeypatch)
    indices = np.array([21, 25, 29])
    frames = read_clip(path, lambda n: indices)
    positions = [p.pts // 512 for p in seen if p.size]  # 25 fps in a 1/12800 time base
    assert positions == list(range(21 // gop * gop, 31))
    assert np.abs(frames.astype(int) - read_frames(path, indices).astype(int)).mean() < 3


def test_pyav_scans_from_the_start_when_timestamps_are_irregular(tmp_path, monkeypatch):
    """A frame missing from the time grid (variable rate): positions are counted, not computed
    from timestamps, so frame n is still the n-th frame, as decord has it."""
    path = tmp_path / "vfr.mp4"
    frames = moving_video(30)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bf": "0", "g": "4", "keyint_min": "4", "sc_threshold": "0"}
        stream.codec_context.time_base = Fraction(1, 25)
        for t, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t + (t >= 10), Fraction(1, 25)  # no frame at 10/25 s
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    seen = count_demuxed(monkeypatch)
    indices = np.array([12, 20, 28])
    pyav = read_clip(path, lambda n: indices)
    assert np.abs(pyav.astype(int) - read_frames(path, indices).astype(int)).mean() < 3
    assert np.abs(pyav.astype(int) - frames[indices].astype(int)).mean() < 12
    assert len([p for p in seen if p.size]) > 29  # scanned from the first packet


@pytest.mark.parametrize("reader", ["pyav", "decord"])
def test_a_bug_in_the_transform_is_not_taken_for_a_bad_video(tmp_path, reader):
    """Only the file's faults become VideoError (the dataset then skips the video); a bug in the
    code that consumes the frames must surface as itself instead of silently skipping videos."""
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(16), keyframe_interval=4)

    def buggy(frame, slots):
        raise IndexError("a bug in the transform")

    def unusable(frame, slots):
        raise ValueError("frame 48x64 does not fit the list's 32x32")

    with pytest.raises(IndexError, match="a bug"):
        decode_clip(path, lambda n: np.arange(4), buggy, reader)
    with pytest.raises(VideoError, match=rf"{path}: frame 48x64 does not fit"):
        decode_clip(path, lambda n: np.arange(4), unusable, reader)


def test_read_frames_gives_numpy_under_decords_torch_bridge(tmp_path):
    """The one defence left against a process-wide ``decord.bridge.set_bridge("torch")``."""
    import decord

    path = tmp_path / "v.mp4"
    write_video(path, np.zeros((4, 32, 32, 3), np.uint8), keyframe_interval=1)
    decord.bridge.set_bridge("torch")
    try:
        frames = read_frames(path, [0, 3])
    finally:
        decord.bridge.set_bridge("native")
    assert isinstance(frames, np.ndarray) and frames.shape == (2, 32, 32, 3)


def _x264_settings(path) -> str:
    """The option string x264 stores in every stream it writes (an SEI message)."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    return data[start : data.index(b"\x00", start)].decode("ascii", "replace")


def test_generated_clips_are_encoded_reproducibly_prepared_ones_as_prepare_does(tmp_path):
    """Generated clips (tests, demo, relational benchmark) must be the same bytes every run:
    x264's macroblock-tree rate control was measured to write different bytes now and then for
    identical frames on this machine's SIMD paths (2-10 % of encodes in long loops; never with
    it off). Prepared videos and the loading benchmark's stand-ins keep prepare's settings."""
    frames = moving_video(16)
    write_video(tmp_path / "generated.mp4", frames)
    write_video(tmp_path / "like_prepared.mp4", frames, reproducible=False)
    assert "mbtree=0" in _x264_settings(tmp_path / "generated.mp4")
    assert "mbtree=1" in _x264_settings(tmp_path / "like_prepared.mp4")
    assert "threads=1 " in _x264_settings(tmp_path / "generated.mp4")
