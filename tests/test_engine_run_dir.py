"""The run directory is trusted with days of work: one trainer at a time, unreadable checkpoints
never restart a run silently, best.pt only gets better, a full disk is one clear line."""

import builtins
import errno
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import start_training, tiny_config_dict
from videoglore.cli import main
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.run_log import RunLog, read_log
from videoglore.errors import OutputError


def _config(tiny_videos, tmp_path, **train) -> tuple:
    run = tmp_path / "run"
    raw = tiny_config_dict(tiny_videos, run)
    raw["train"].update(train)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, run


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"ended before {what}:\n{proc.stdout.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _starts(run) -> list[dict]:
    log = run / "log.jsonl"
    return [r for r in read_log(log) if r["kind"] == "start"] if log.is_file() else []


def test_a_second_trainer_on_the_same_run_exits_2_and_a_killed_one_blocks_nothing(
    tiny_videos, tmp_path, capsys
):
    config, run = _config(tiny_videos, tmp_path, epochs=200, val_every=0)
    first = start_training(config)
    try:
        _wait_for(lambda: _starts(run), first, "the first trainer started")
        assert main(["train", "-c", str(config)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert f"PID {first.pid} on {socket.gethostname()}" in err and str(run) in err
        assert len(_starts(run)) == 1  # the second process logged nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # a killed holder leaves its lock file, but the OS released the lock with the process
    assert main(["train", "-c", str(config), "train.epochs=1"]) == 0
    assert len(_starts(run)) == 2


def test_no_readable_checkpoint_refuses_to_restart_and_keeps_every_file(
    tiny_videos, tmp_path, capsys
):
    config, run = _config(tiny_videos, tmp_path, epochs=2)
    assert main(["train", "-c", str(config)]) == 0
    capsys.readouterr()
    folder = run / "checkpoints"
    # best.pt holds a model better than any a restart could give
    best = ckpt.load_checkpoint(folder / "best.pt")
    ckpt.save_checkpoint({**best, "best_acc": 1.0}, folder / "best.pt")
    for name in ("epoch_0001.pt", "epoch_0002.pt"):
        (folder / name).write_bytes((folder / name).read_bytes()[:1000])  # torn
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    assert main(["train", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "none of the 2 checkpoints" in err and "train.start_over_if_unreadable=true" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert len(_starts(run)) == 1

    # the explicit override starts over; the unreadable files are kept, best.pt only improves
    assert main(["train", "-c", str(config), "train.start_over_if_unreadable=true"]) == 0
    assert [s["step"] for s in _starts(run)] == [0, 0]
    for name in ("epoch_0001.pt", "epoch_0002.pt"):
        assert (folder / "unreadable" / name).read_bytes() == before[name]
    assert (folder / "best.pt").read_bytes() == before["best.pt"]
    assert [p.name for p in ckpt.training_checkpoints(run)] == ["epoch_0001.pt", "epoch_0002.pt"]
    assert ckpt.load_checkpoint(folder / "epoch_0002.pt")["iteration"] == 8


class _FullDisk:
    """A file that takes ``room`` bytes (or characters), then fails like a full disk (ENOSPC)."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        text = isinstance(data, str)
        size = len(data) if text else memoryview(data).nbytes
        if size > self.room:
            self.file.write(
                data[: self.room] if text else bytes(memoryview(data).cast("B")[: self.room])
            )
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_full_disk_while_saving_a_checkpoint(tiny_videos, tmp_path, monkeypatch, capsys):
    config, run = _config(tiny_videos, tmp_path, epochs=1, val_every=0)
    real_open = builtins.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name.startswith(".epoch_"):
            return _FullDisk(handle, room=10_000)
        return handle

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    assert main(["train", "-c", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    folder = run / "checkpoints"
    assert err.startswith(f"error: cannot write to {folder}: ") and "(ENOSPC)" in err, err
    needed = int(re.search(r"needs (\d+) bytes", err).group(1))
    assert list(folder.iterdir()) == []  # no temp file left behind

    monkeypatch.setattr(builtins, "open", real_open)
    stale = folder / ".epoch_0003.pt.999999.tmp"  # left by a writer killed long ago
    stale.write_bytes(b"partial")
    assert main(["train", "-c", str(config)]) == 0
    assert not stale.exists()
    written = (folder / "epoch_0001.pt").stat().st_size
    assert abs(needed - written) <= 0.01 * written  # the same model state, a few bytes apart


def test_a_full_disk_turns_the_run_log_off_with_one_warning(tmp_path, monkeypatch, caplog):
    run_log = RunLog(tmp_path / "run")
    run_log.open()
    run_log.write("start", 0, epoch=0)
    real_open = builtins.open

    def full(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return _FullDisk(handle, room=0) if Path(file).name == "log.jsonl" else handle

    monkeypatch.setattr(builtins, "open", full)
    run_log.close()
    run_log = RunLog(tmp_path / "run")
    run_log.open()  # a resumed run appends
    for step in (1, 2, 3):
        run_log.write("train_step", step, loss=1.0)  # rank 0 alone: never raises
    run_log.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert f"cannot write to {tmp_path / 'run'}: " in warnings[0] and "(ENOSPC)" in warnings[0]
    assert "\n" not in warnings[0]
    assert [r["kind"] for r in read_log(tmp_path / "run" / "log.jsonl")] == ["start"]


def test_an_unwritable_run_log_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write to .*file.*ENOTDIR"):
        RunLog(tmp_path / "file" / "run").open()


def test_a_checkpoint_that_cannot_be_pruned_is_one_line(tmp_path, monkeypatch):
    for name in ("epoch_0001.pt", "epoch_0002.pt"):
        ckpt.save_checkpoint({"model": {}}, tmp_path / "checkpoints" / name)

    def refuse(self, missing_ok=False):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(OutputError, match=r"cannot write to .*checkpoints.*EACCES.*epoch_0001"):
        ckpt.prune_checkpoints(tmp_path, keep_last=1)


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (Linux)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_the_best_bar_is_read_without_reading_the_weights(tmp_path):
    weights = {"w": torch.zeros(4_000_000)}  # 16 MB
    ckpt.save_checkpoint({"model": weights, "best_acc": 0.75}, tmp_path / "checkpoints/best.pt")
    before = _bytes_read()
    bar = ckpt.best_bar(tmp_path)
    assert bar == 0.75 and _bytes_read() - before < 1_000_000
    best = tmp_path / "checkpoints" / "best.pt"
    torn = best.read_bytes()[:8_000_000]
    best.write_bytes(torn)
    assert ckpt.best_bar(tmp_path) == -1.0  # unreadable: set aside, kept
    assert not best.exists() and (best.parent / "unreadable" / "best.pt").read_bytes() == torn
