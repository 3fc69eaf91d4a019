"""prepare's trust faults: a disk that fills up while PyAV writes, sources that cannot be read.

A full disk inside PyAV's muxer or trailer write reaches us wrapped (``PyAVCallbackError``, the
``OSError`` only in its context); it is still an output error: one line, nothing recorded for the
video, no temp file, and the rerun with space keeps every good video. A source that cannot be
read for a reason of the environment (no permission, an I/O error, a stale network handle, a
timeout) is reported as ``unreadable`` and never remembered, so the rerun after the fix adds it.
Only a file that was read and found bad is ``broken``.
"""

from __future__ import annotations

import builtins
import errno
import json
import multiprocessing
import os
from functools import partial
from pathlib import Path

import av
import pytest

import data_prep.files as files
import data_prep.runner as runner
from data_prep.errors import OutputError
from data_prep.prepare import prepare
from tests.test_data_prep_output import (
    assert_one_line,
    assert_rerun_completes,
    class_tree,
    ledger,
    leftovers,
    options,
    read_skipped,
)
from videoglore.cli import main

VICTIM = "b_0"  # the video whose output meets the full disk
VICTIM_KEY = f"videos/train/b/{VICTIM}.mp4"


# --------------------------------------------------------------------------- a disk that fills up


class FullDiskFile:
    """The temp file of one output on a disk that fills up while PyAV writes to it.

    ``where="muxer"``: the header (PyAV's first write, 48 bytes) fits, the first packet does not.
    ``where="trailer"``: every packet fits; the disk is full once the mp4 muxer seeks back to
    finish the file (``av_write_trailer`` patches the mdat size, then writes the moov box).
    Each failing write raises ``OSError(ENOSPC)`` as a real full disk does.
    """

    def __init__(self, file, where: str):
        self.file, self.where = file, where
        self.written, self.seeked = 0, False

    def write(self, data) -> int:
        full = self.seeked if self.where == "trailer" else self.written + len(data) > 100
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(data)
        return self.file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.seeked = True
        return self.file.seek(offset, whence)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self) -> FullDiskFile:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def fill_disk_in_this_process(where: str, name: str = VICTIM) -> None:
    """From now on, the temp file of output ``name`` meets a full disk (:class:`FullDiskFile`).

    Reached through the real path: ``atomic_open`` opens the temp file (``data_prep.files.open``
    is looked up before the builtin), ``av.open(f, "w")`` writes to it.
    """

    def open_(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        if Path(path).name.startswith(f".{name}.mp4.") and "w" in mode:
            return FullDiskFile(f, where)
        return f

    files.open = open_


def _worker_with_full_disk(where: str) -> None:
    """Pool initializer: the normal start of a worker, then the full disk (in that worker)."""
    runner._start_worker()
    fill_disk_in_this_process(where)


def fill_disk(monkeypatch, where: str, workers: int) -> None:
    """The victim's output meets a full disk in whichever process writes it."""
    if workers == 1:
        monkeypatch.setattr(files, "open", builtins.open, raising=False)  # undone by undo()
        fill_disk_in_this_process(where)
    else:  # the pool's workers start with it (forkserver: they import this module)
        monkeypatch.setattr(runner, "_start_worker", partial(_worker_with_full_disk, where))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("where", ["muxer", "trailer"])
def test_disk_full_inside_pyav_is_an_output_error(tmp_path, monkeypatch, where, workers):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    fill_disk(monkeypatch, where, workers)
    with pytest.raises(OutputError) as error:
        prepare(options(tree, out, workers=workers))
    assert multiprocessing.active_children() == []
    assert_one_line(
        error,
        f"cannot write to {out / 'videos' / 'train' / 'b'}: No space left on device (ENOSPC)",
        f"(writing {VICTIM}.mp4); free some space there and rerun",
    )
    records = ledger(out)
    assert all(r["status"] == "ok" for r in records)  # never "broken"
    assert VICTIM_KEY not in {r["key"] for r in records}  # nothing recorded for it
    assert not (out / VICTIM_KEY).exists() and leftovers(out) == []
    monkeypatch.undo()  # space freed: the rerun keeps every good video
    assert_rerun_completes(tree, out, len(records), tmp_path, workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_disk_full_prints_one_line_and_no_traceback(tmp_path, monkeypatch, capfd, workers):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    fill_disk(monkeypatch, "muxer", workers)
    argv = ["prepare", "--out", str(out), "--folder", f"train={tree}", "--short-side", "32"]
    code = main(argv + ["--keyframe-interval", "4", "--workers", str(workers), "--no-progress"])
    err = capfd.readouterr().err  # the workers' stderr too (file descriptor 2)
    assert code == 2
    assert [line for line in err.splitlines() if "error" in line.lower()] == [
        f"error: cannot write to {out / 'videos' / 'train' / 'b'}: No space left on device "
        f"(ENOSPC) (writing {VICTIM}.mp4); free some space there and rerun"
    ]
    assert "Traceback" not in err and "PyAV" not in err


# --------------------------------------------------------------------------- unreadable sources


class FlakyInput:
    """An input container whose ``decode`` fails with ``exc`` after ``frames`` frames."""

    def __init__(self, container, frames: int, exc: Exception):
        self.container, self.frames, self.exc = container, frames, exc

    def decode(self, *args, **kwargs):
        for i, frame in enumerate(self.container.decode(*args, **kwargs)):
            if i == self.frames:
                raise self.exc
            yield frame

    def __getattr__(self, name: str):
        return getattr(self.container, name)

    def __enter__(self) -> FlakyInput:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()


def _av_error(code: int, path: str) -> OSError:
    """What PyAV raises when FFmpeg's file protocol fails with ``code``: an ``av.error`` class
    that is also the builtin ``OSError`` subclass of that errno."""
    classes = {
        errno.EACCES: av.error.PermissionError,
        errno.ETIMEDOUT: av.error.TimeoutError,
        errno.ENOENT: av.error.FileNotFoundError,
    }
    return classes.get(code, av.error.OSError)(code, os.strerror(code), path)


def unreadable_source(monkeypatch, source: Path, code: int, when: str) -> None:
    """Reading ``source`` fails with ``code``: at ``os.stat``, when PyAV opens it, or part-way
    through decoding it (after 3 frames)."""
    real_open, real_stat = av.open, os.stat

    def open_(path, *args, **kwargs):
        if str(path) == str(source):
            if when == "open":
                raise _av_error(code, str(path))
            if when == "read":
                return FlakyInput(real_open(path, *args, **kwargs), 3, _av_error(code, str(path)))
        return real_open(path, *args, **kwargs)

    def stat_(path, *args, **kwargs):
        if str(path) == str(source):
            raise OSError(code, os.strerror(code), str(path))
        return real_stat(path, *args, **kwargs)

    if when == "stat":
        monkeypatch.setattr(os, "stat", stat_)
    else:
        monkeypatch.setattr(av, "open", open_)


CASES = [
    (errno.EACCES, "open", "Permission denied"),  # chmod 000, or a folder without x
    (errno.EACCES, "stat", "Permission denied"),
    (errno.EIO, "read", "Input/output error"),  # a failing disk part-way through the file
    (errno.ESTALE, "open", "Stale file handle"),  # NFS
    (errno.ETIMEDOUT, "open", "Connection timed out"),  # a network file system
]


@pytest.mark.parametrize(
    ("code", "when", "cause", "reencode"),
    [(*case, True) for case in CASES] + [(*case, False) for case in CASES if case[1] != "read"],
)  # --no-reencode decodes one frame of the source: a failure part-way is not met
def test_unreadable_source_is_reported_and_tried_again(
    tmp_path, monkeypatch, code, when, cause, reencode
):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    source = tree / "b" / f"{VICTIM}.mp4"
    unreadable_source(monkeypatch, source, code, when)
    summary = prepare(options(tree, out, reencode=reencode))
    assert read_skipped(out) == [f"b/{VICTIM}.mp4,train,unreadable: cannot read it ({cause})"]
    train = summary.splits["train"]
    assert (train.unreadable, train.broken, train.kept) == (1, 0, 5)
    assert "1 video could not be read (unreadable in skipped.csv)" in summary.format()
    assert f"b/{VICTIM}.mp4" not in {r["key"].removeprefix("videos/train/") for r in ledger(out)}
    assert not (out / VICTIM_KEY).exists() and leftovers(out) == []
    monkeypatch.undo()  # access restored: the rerun adds it, without redoing the others
    summary = prepare(options(tree, out, reencode=reencode))
    assert (summary.processed, summary.reused) == (1, 5)
    assert summary.splits["train"].kept == 6 and read_skipped(out) == []


def test_deleted_while_read_is_missing_not_broken(tmp_path, monkeypatch):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    source, real_open = tree / "b" / f"{VICTIM}.mp4", av.open
    kept = source.read_bytes()

    def deleted_before_open(path, *args, **kwargs):  # after the worker's os.stat
        if str(path) == str(source):
            source.unlink(missing_ok=True)
        return real_open(path, *args, **kwargs)  # PyAV's own FileNotFoundError

    monkeypatch.setattr(av, "open", deleted_before_open)
    summary = prepare(options(tree, out))
    assert (summary.splits["train"].missing, summary.splits["train"].broken) == (1, 0)
    assert read_skipped(out) == [
        f"b/{VICTIM}.mp4,train,missing: no file found (deleted during the run)"
    ]
    assert len(ledger(out)) == 5  # nothing remembered about it
    monkeypatch.undo()
    source.write_bytes(kept)  # back again
    assert prepare(options(tree, out)).processed == 1


def test_a_file_found_bad_is_still_broken_and_remembered(tmp_path):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    (tree / "b" / f"{VICTIM}.mp4").write_bytes(os.urandom(3000))
    assert prepare(options(tree, out)).splits["train"].broken == 1
    assert read_skipped(out) == [
        f"b/{VICTIM}.mp4,train,broken: cannot open or decode (Invalid data found when processing "
        "input)"
    ]
    assert prepare(options(tree, out)).reused == 6  # a verdict: not redone


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_really_unreadable_file(tmp_path):
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    source = tree / "b" / f"{VICTIM}.mp4"
    source.chmod(0)
    try:
        assert prepare(options(tree, out)).splits["train"].unreadable == 1
    finally:
        source.chmod(0o644)
    assert read_skipped(out) == [
        f"b/{VICTIM}.mp4,train,unreadable: cannot read it (Permission denied)"
    ]
    assert prepare(options(tree, out)).processed == 1 and read_skipped(out) == []


def test_no_verdicts_in_older_ledgers_are_checked_again(tmp_path):
    """Version-2 ledgers hold full disks and read failures as "broken" and have no rotation."""
    tree, out = class_tree(tmp_path / "src"), tmp_path / "out"
    prepare(options(tree, out))
    wrong = {
        "videos/train/b/b_0.mp4": "unexpected error (PyAVCallbackError: [Errno 1447131472] "
        "Error in PyAV callback: '/out/.prepare/tmp/.b_0.mp4.123.tmp')",
        "videos/train/b/b_1.mp4": "cannot open or decode (Permission denied)",
    }
    old = []
    for record in ledger(out):
        record.pop("rotation", None)  # (none before this version)
        record["version"] = 2
        if record["key"] in wrong:
            record |= {"status": "broken", "reason": wrong[record["key"]], "frame_count": 0}
        old.append(json.dumps(record))
    (out / ".prepare" / "results.jsonl").write_text("\n".join(old) + "\n")
    summary = prepare(options(tree, out))
    assert (summary.processed, summary.reused) == (2, 4)  # the "ok" lines stay valid
    assert summary.splits["train"].kept == 6 and read_skipped(out) == []
    assert {(r["version"], r["rotation"]) for r in ledger(out)} == {(3, 0)}  # brought up to date
    assert prepare(options(tree, out)).reused == 6


def test_mp4_output_unwraps_what_pyav_wraps(tmp_path):
    """The ways a failed write reaches ``mp4_output``: a PyAV error raised while the OSError was
    handled (as the trailer write does), one naming our temp file alone, one about another file."""
    from data_prep.codec import mp4_output
    from data_prep.files import temp_path

    path, code = tmp_path / "v" / "out.mp4", 1447131472  # PyAV's "PyAV" error tag
    with pytest.raises(OutputError) as error:
        with mp4_output(path):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise av.error.PyAVCallbackError(code, "Error in PyAV callback")  # noqa: B904
    assert_one_line(error, f"cannot write to {path.parent}: No space left on device (ENOSPC)")
    with pytest.raises(OutputError) as error:
        with mp4_output(path):
            raise av.error.PyAVCallbackError(code, "Error in PyAV callback", str(temp_path(path)))
    assert_one_line(error, "PyAV could not write it (PyAVCallbackError) (EIO)")
    with pytest.raises(av.error.PyAVCallbackError):
        with mp4_output(path):
            raise av.error.PyAVCallbackError(code, "Error in PyAV callback", "/elsewhere.mp4")
    assert list(path.parent.iterdir()) == []  # no temp file left by any of them
