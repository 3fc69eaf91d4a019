"""The PyAV clip reader against decord on the same files, its fallback and its errors."""

from __future__ import annotations

import av
import numpy as np
import pytest

from data_prep.codec import write_video
from videoglore.data.video import read_clip, read_frames
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
