"""prepare when the output side fails: disk full, a file in the way, a failed final write.

An output error is never a property of a video: the run stops with one line naming the folder
and the cause, nothing is recorded for the unfinished videos, no partial file is left, what was
finished is kept, and the rerun (after the fault is fixed) finishes the dataset.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import data_prep.runner as runner
from data_prep.errors import OutputError
from data_prep.prepare import PrepareOptions, prepare
from tests.test_data_prep import tiny_video

PREPARED = ("train.csv", "classes.json", "skipped.csv")


def class_tree(root: Path, classes=("a", "b", "c"), per_class: int = 2) -> Path:
    """``root/train/<class>/<class>_<i>.mp4``: tiny 16-frame videos; returns ``root/train``."""
    for name in classes:
        for i in range(per_class):
            tiny_video(root / "train" / name / f"{name}_{i}.mp4")
    return root / "train"


def options(tree: Path, out: Path, **kw) -> PrepareOptions:
    base = dict(
        folders={"train": str(tree)}, short_side=32, keyframe_interval=4, workers=1, progress=False
    )
    return PrepareOptions(str(out), **(base | kw))


def ledger(out: Path) -> list[dict]:
    path = out / ".prepare" / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line whole


def leftovers(out: Path) -> list[Path]:
    """Temp files or partial outputs anywhere under ``out``."""
    temps = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    return temps + ([out / ".prepare" / "tmp"] if (out / ".prepare" / "tmp").exists() else [])


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    for part in parts:
        assert part in message, (part, message)


def assert_rerun_completes(tree: Path, out: Path, finished: int, tmp_path: Path, **kw) -> None:
    """The rerun reuses the ``finished`` videos, does the rest, and writes what a clean run does."""
    summary = prepare(options(tree, out, **kw))
    assert summary.reused == finished
    assert summary.splits["train"].broken == 0 and summary.splits["train"].kept == 6
    clean = tmp_path / "clean"
    prepare(options(tree, clean))
    for name in PREPARED:
        assert (out / name).read_text() == (clean / name).read_text(), name
    assert leftovers(out) == []


def test_disk_full_while_writing_a_video_stops_and_the_rerun_finishes(tmp_path, monkeypatch):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    real_replace, renamed = os.replace, []

    def disk_full_at_third_video(src, dst):
        if str(dst).endswith(".mp4"):
            if len(renamed) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(src))
            renamed.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full_at_third_video)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out))
    assert_one_line(error, f"cannot write to {out / 'videos' / 'train' / 'b'}", "ENOSPC")
    # the two finished videos are recorded as done; nothing at all for the others
    assert [(r["key"], r["status"]) for r in ledger(out)] == [
        ("videos/train/a/a_0.mp4", "ok"),
        ("videos/train/a/a_1.mp4", "ok"),
    ]
    assert not any((out / name).exists() for name in PREPARED)  # no list with a hole in it
    assert leftovers(out) == []
    monkeypatch.undo()  # space freed
    assert_rerun_completes(tree, out, 2, tmp_path)


@pytest.mark.parametrize("blocked", ["videos/train/b", ".prepare"])
def test_output_path_blocked_by_a_file_stops_every_worker(tmp_path, blocked):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    (out / blocked).parent.mkdir(parents=True)
    (out / blocked).write_text("in the way")
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out, workers=2))
    assert multiprocessing.active_children() == []  # the pool stopped before prepare returned
    assert_one_line(error, f"cannot write to {out / blocked}", "file")
    records = ledger(out)
    assert all(r["status"] == "ok" for r in records)  # an output failure is never "broken"
    assert not any(r["key"].startswith("videos/train/b/") for r in records)
    assert not any((out / name).exists() for name in PREPARED) and leftovers(out) == []
    (out / blocked).unlink()
    assert_rerun_completes(tree, out, len(records), tmp_path, workers=2)


def test_ledger_append_on_a_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    real_write, lines = os.write, []

    def half_then_full(fd, data):
        if bytes(data).startswith(b'{"key"'):
            lines.append(data)
            if len(lines) == 4:  # a partial write, then the disk is full
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(runner.os, "write", half_then_full)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out))
    assert_one_line(error, f"cannot write to {out / '.prepare'}", "ENOSPC", "results.jsonl")
    assert len(ledger(out)) == 3  # the torn fourth line was taken back
    assert not any((out / name).exists() for name in PREPARED) and leftovers(out) == []
    monkeypatch.undo()
    assert_rerun_completes(tree, out, 3, tmp_path)


@pytest.mark.parametrize("name", ["train.csv", "classes.json", "skipped.csv", "results.jsonl"])
def test_final_writes_on_a_full_disk_keep_the_old_file_whole(tmp_path, monkeypatch, name):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    prepare(options(tree, out))
    (tmp_path / "src" / "train" / "a" / "a_0.mp4").touch()  # so the rerun redoes one video
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".mp4"}
    real_replace = os.replace

    def disk_full(src, dst):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out))
    assert_one_line(error, "cannot write to", "ENOSPC", name)
    target = next(p for p in before if p.name == name)
    if name == "results.jsonl":  # appended to during the run, then compaction failed
        assert len(ledger(out)) == 7  # every line whole: 6 videos + the redone one
    else:
        assert target.read_bytes() == before[target]  # the old file, whole
    assert leftovers(out) == []
    monkeypatch.undo()
    assert_rerun_completes(tree, out, 6, tmp_path)


def test_broken_lines_of_an_older_ledger_are_checked_again(tmp_path):
    """Ledgers written before output failures stopped the run may hold them as "broken"."""
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    prepare(options(tree, out))
    path = out / ".prepare" / "results.jsonl"
    old = []
    for record in ledger(out):
        del record["version"]
        if record["key"] == "videos/train/b/b_0.mp4":
            reason = "unexpected error (OSError: [Errno 28] No space left on device)"
            record |= {"status": "broken", "reason": reason}
        old.append(json.dumps(record))
    path.write_text("\n".join(old) + "\n")
    summary = prepare(options(tree, out))
    assert (summary.processed, summary.reused) == (1, 5)  # the "ok" lines stay valid
    assert summary.splits["train"].kept == 6 and not read_skipped(out)


def read_skipped(out: Path) -> list[str]:
    return (out / "skipped.csv").read_text().splitlines()[1:]


# --------------------------------------------------------------------------- a real full disk


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs (needs root and a mount command); skipped where mounting is not allowed."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path, leave_blocks: int) -> Path:
    """Fill the file system of ``folder`` up to ``leave_blocks`` free blocks."""
    st = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * max(0, (st.f_bavail - leave_blocks) * st.f_frsize))
    return filler


@pytest.mark.parametrize("leave_blocks", [0, 3])
def test_really_full_disk(tmp_path, small_filesystem, leave_blocks):
    tree, out = class_tree(tmp_path / "src"), small_filesystem / "out"
    out.mkdir()
    filler = fill(small_filesystem, leave_blocks)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out))
    assert_one_line(error, f"cannot write to {out}", "No space left on device (ENOSPC)")
    records = ledger(out)
    assert all(r["status"] == "ok" for r in records)
    assert not any((out / name).exists() for name in PREPARED) and leftovers(out) == []
    filler.unlink()
    assert_rerun_completes(tree, out, len(records), tmp_path)


def test_read_only_file_system(tmp_path, small_filesystem):
    tree, out = class_tree(tmp_path / "src"), small_filesystem / "out"
    out.mkdir()
    remount = ["mount", "-o", "remount,{}", "tmpfs", str(small_filesystem)]
    subprocess.run([a.format("ro") for a in remount], check=True, capture_output=True)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out))
    assert_one_line(error, f"cannot write to {out}", "(EROFS)", "choose a writable folder")
    subprocess.run([a.format("rw") for a in remount], check=True, capture_output=True)
    assert_rerun_completes(tree, out, 0, tmp_path)
