"""Rotated sources (a display matrix, as phones write): prepared upright, or the turn recorded.

Ground truth: frames whose upright content is known and asymmetric are stored turned
anticlockwise by R with a display matrix saying "turn R clockwise to show" (what a phone filmed
upright writes, and what ``ffmpeg`` undoes when it autorotates). Re-encoding must give back the
upright frames at the upright size; with ``--no-reencode`` the list records R and the upright
size, and turning the decoded frames R clockwise gives the upright frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from data_prep.codec import probe_video
from data_prep.lists import read_video_list
from data_prep.prepare import PrepareOptions, prepare

pytestmark = pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
    reason="writing a display matrix needs PyAV >= 18",
)

H, W = 48, 64  # upright: landscape, wider than high
ROTATIONS = (90, 180, 270)


def upright_frames(count: int = 12) -> np.ndarray:
    """uint8 (T, H, W, 3), asymmetric both ways: a white block at the top left, a red ramp
    growing to the right, a blue band along the bottom of the right half, a moving dot."""
    frames = np.zeros((count, H, W, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None, None, :]
    frames[:, :12, :16] = 255
    frames[:, H - 8 :, W // 2 :, 2] = 255
    for t in range(count):
        frames[t, 24:30, 20 + 2 * t : 26 + 2 * t, 1] = 255
    return frames


def rotated_source(path: Path, rotation: int) -> np.ndarray:
    """Store the upright frames turned ``rotation`` anticlockwise, with a display matrix that
    turns them back (H.264, crf 10); returns the upright frames.

    PyAV >= 18 writes the matrix (the mp4 muxer puts it in ``tkhd``); its angle is
    anticlockwise, as ``VideoFrame.rotation`` reads it back, so "turn R clockwise" is -R.
    """
    frames = upright_frames()
    stored = np.rot90(frames, rotation // 90, axes=(1, 2))  # rot90: anticlockwise
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = stored.shape[1:3]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "10"}
        stream.set_display_rotation(-rotation)
        for image in stored:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return frames


def decoded(path: Path) -> np.ndarray:
    """uint8 (T, H, W, 3) frames as stored (no rotation applied)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_upright(frames: np.ndarray, upright: np.ndarray) -> None:
    """Same shape as the upright frames and close to them; far from them turned half a turn
    (so a right answer is not a blur that fits everything)."""
    assert frames.shape == upright.shape
    assert error(frames, upright) < 6
    assert error(frames, upright[:, ::-1, ::-1]) > 40


def run(tree: Path, out: Path, **kw):
    """prepare ``tree`` (class folders) as the train split, short side 48: no scaling."""
    base = dict(folders={"train": str(tree)}, short_side=48, keyframe_interval=4, workers=1)
    return prepare(PrepareOptions(str(out), **(base | kw)))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """``all/turn<R>/r<R>.mp4`` for R = 0, 90, 180, 270 (class folders: one per R) and a copy of
    each in ``only<R>/turn<R>/``; the upright frames of each R."""
    root = tmp_path_factory.mktemp("rotated")
    found: dict = {"all": root / "all"}
    for r in (0, *ROTATIONS):
        found[r] = rotated_source(root / "all" / f"turn{r}" / f"r{r}.mp4", r)
        (root / f"only{r}" / f"turn{r}").mkdir(parents=True)
        shutil.copy(root / "all" / f"turn{r}" / f"r{r}.mp4", root / f"only{r}" / f"turn{r}")
        found[f"only{r}"] = root / f"only{r}"
    return found


def source_path(sources: dict, rotation: int) -> Path:
    return sources["all"] / f"turn{rotation}" / f"r{rotation}.mp4"


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_probe_reads_the_display_matrix_as_clockwise_degrees(sources, rotation):
    info = probe_video(source_path(sources, rotation))
    assert info.rotation == rotation
    assert (info.width, info.height) == ((H, W) if rotation % 180 else (W, H))  # as stored
    assert info.upright_size == (W, H)


def test_reencoded_videos_are_upright(sources, tmp_path):
    out = tmp_path / "out"
    summary = run(sources["all"], out)
    assert summary.splits["train"].kept == 4
    records = {Path(r.path).stem: r for r in read_video_list(out / "train.csv")}
    for rotation in (0, *ROTATIONS):
        record = records[f"r{rotation}"]
        assert (record.width, record.height, record.rotation) == (W, H, 0)
        path = Path(record.path)
        assert probe_video(path).rotation == 0  # no display matrix left to apply
        assert_upright(decoded(path), sources[rotation])
    lines = (out / ".prepare" / "results.jsonl").read_text().splitlines()
    assert {json.loads(line)["rotation"] for line in lines} == {0, *ROTATIONS}  # the source's


def test_rotated_video_is_scaled_upright(sources, tmp_path):
    """Scaling (short side 24) happens in the stored orientation, before the turn."""
    run(sources["only90"], tmp_path / "out", short_side=24)
    (record,) = read_video_list(tmp_path / "out" / "train.csv")
    assert (record.width, record.height) == (W // 2, H // 2)
    upright = sources[90].reshape(-1, H // 2, 2, W // 2, 2, 3).mean(axis=(2, 4))  # 2x2 area
    frames = decoded(Path(record.path))
    assert frames.shape == upright.shape and error(frames, upright) < 8
    assert error(frames, upright[:, ::-1, ::-1]) > 40


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_no_reencode_records_the_rotation_and_the_upright_size(sources, tmp_path, rotation):
    run(sources[f"only{rotation}"], tmp_path / "out", reencode=False)
    (record,) = read_video_list(tmp_path / "out" / "train.csv")
    assert (record.width, record.height, record.rotation) == (W, H, rotation)
    turned = np.rot90(decoded(Path(record.path)), -rotation // 90, axes=(1, 2))  # clockwise
    assert_upright(turned, sources[rotation])


@pytest.mark.parametrize("workers", [1, 2])
def test_sideways_videos_of_an_earlier_version_are_redone(sources, tmp_path, workers):
    """Ledger lines from before rotations were applied (version 2, no ``rotation``): a rotated
    source's file was stored sideways and is redone; an upright one is kept as it is. The
    sources are probed by the workers."""
    out = tmp_path / "out"
    run(sources["all"], out)
    path = out / ".prepare" / "results.jsonl"
    old = [json.loads(line) for line in path.read_text().splitlines()]
    for record in old:
        del record["rotation"]
        record["version"] = 2
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    summary = run(sources["all"], out, workers=workers)
    assert (summary.processed, summary.reused) == (3, 1)
    assert all(r.rotation == 0 for r in read_video_list(out / "train.csv"))
    assert {json.loads(line)["version"] for line in path.read_text().splitlines()} == {3}
    assert run(sources["all"], out).reused == 4


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_sources_are_what_ffmpeg_autorotate_shows(sources, rotation):
    """The test sources themselves, checked by an independent reader: ``ffmpeg`` applies the
    display matrix (autorotate is its default) and must show the upright frames."""
    path = source_path(sources, rotation)
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    assert_upright(np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3), sources[rotation])


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_decord_turns_rotated_sources_itself(sources, rotation):
    """decord 0.6 applies the display matrix (PyAV does not): with --no-reencode a loader
    reading through decord must not turn the frames again; ``rotation`` is for PyAV's frames."""
    from data_prep.codec import open_decord

    reader = open_decord(source_path(sources, rotation))
    assert_upright(reader.get_batch(list(range(len(reader)))).asnumpy(), sources[rotation])
