"""FFmpeg and decord write their own complaints to file descriptor 2 (``moov atom not found``,
``[h264 @ 0x...] error while decoding MB``, ``video_reader.cc:83: ERROR opening``); the user
must see our one line instead. Checked at the file-descriptor level (``capfd``), and in a
subprocess for prepare's worker processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep.codec import write_video
from tests.test_data_prep import read_rows
from videoglore.cli import main
from videoglore.data.video import read_clip
from videoglore.errors import VideoError

# "[h264 @ 0x55d1c0]", "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...]", "[11:39:13] src/x.cc:83: ", "moov atom"
NOISE = re.compile(r"@ 0x[0-9a-f]+\]|\.cc:\d+|moov atom|error while decoding")


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    """A good video and two damaged copies, in a folder-per-class tree."""
    root = tmp_path_factory.mktemp("noise") / "train"
    frames = np.random.default_rng(0).integers(0, 256, (32, 48, 64, 3), dtype=np.uint8)
    good = root / "walking" / "good.mp4"
    write_video(good, frames, keyframe_interval=250)  # one GOP: damage reaches many frames
    data = bytearray(good.read_bytes())
    truncated = root / "walking" / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # the moov atom is at the end: unopenable
    for i in range(len(data) // 3, len(data) // 2, 7):  # flip bits inside the frame data
        data[i] ^= 0x5A
    corrupt = root / "running" / "corrupt.mp4"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(bytes(data))
    return {"root": root, "good": good, "truncated": truncated, "corrupt": corrupt}


def assert_quiet(text: str) -> None:
    assert not NOISE.search(text), f"library noise reached the terminal:\n{text}"


@pytest.mark.parametrize("reencode", [True, False])
def test_prepare_reports_bad_videos_in_its_own_words(bad_videos, tmp_path, capfd, reencode):
    out = tmp_path / "out"
    args = ["prepare", "--out", str(out), "--folder", f"train={bad_videos['root']}"]
    args += ["--workers", "1", "--no-progress"] + ([] if reencode else ["--no-reencode"])
    assert main(args) == 0
    captured = capfd.readouterr()
    assert_quiet(captured.err)
    broken = 1 if reencode else 2  # re-encoding keeps the frames before the damage
    listed, found, missing, outside, duplicate, *rest = captured.out.splitlines()[1].split()[1:]
    assert (listed, found, missing, outside, duplicate) == ("3", "3", "0", "0", "0")
    # broken, unreadable, too_short, kept
    assert rest[:4] == [str(broken), "0", "0", str(3 - broken)]
    reasons = [row["reason"] for row in read_rows(out / "skipped.csv")]
    assert len(reasons) == broken and all(r.startswith("broken: ") for r in reasons)
    for reason in reasons:  # one readable reason, not decord's "[time] file.cc:line:" lines
        assert "\n" not in reason and not re.search(r"\[\d\d:\d\d:\d\d\]|\.cc:\d+", reason)


def test_prepare_workers_are_quiet(bad_videos, tmp_path):
    code = (
        "from data_prep.prepare import PrepareOptions, prepare\n"
        f"s = prepare(PrepareOptions({str(tmp_path / 'out')!r}, "
        f"folders={{'train': {str(bad_videos['root'])!r}}}, reencode=False, workers=2, "
        "progress=False))\n"
        "print(s.splits['train'].broken)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"]
    assert_quiet(done.stderr)


@pytest.mark.parametrize("reader", ["pyav", "decord"])
@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_readers_report_damaged_videos_in_one_line(bad_videos, capfd, reader, name):
    path = bad_videos[name]
    try:
        frames = read_clip(path, lambda n: np.arange(n), reader=reader)
    except VideoError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
    else:
        assert frames.ndim == 4 and name == "corrupt"  # damaged frames may still decode
    assert_quiet(capfd.readouterr().err)
    if name == "truncated":  # the one line the user reads, from the loader's VideoError
        with pytest.raises(VideoError, match=f"^{re.escape(str(path))}: "):
            read_clip(path, lambda n: np.arange(n), reader=reader)
        assert_quiet(capfd.readouterr().err)
