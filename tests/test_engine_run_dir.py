"""The run directory is trusted with days of work: one trainer at a time, unreadable checkpoints
never restart a run silently, best.pt only gets better, a full disk is one clear line."""

import builtins
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import REPO, start_training, tiny_config_dict
from videoglore.cli import main
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.run_lock import RunLock
from videoglore.engine.run_log import RunLog, read_log
from videoglore.errors import OutputError, TrainingError


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


def _children(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_trainer_killed_with_loader_workers_running_blocks_no_rerun(tiny_videos, tmp_path):
    """kill -9 of the trainer while its DataLoader workers run (a scheduler preempting the job),
    then the same command at once, as an automatic requeue does: the workers outlive their parent
    for a few seconds, and must not hold the run directory meanwhile."""
    run = tmp_path / "run"
    raw = tiny_config_dict(tiny_videos, run)
    raw["data"]["num_workers"] = 2
    raw["train"].update({"epochs": 200, "val_every": 0})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    first = start_training(config)
    try:
        steps = lambda: [r for r in read_log(run / "log.jsonl") if r["kind"] == "train_step"]  # noqa: E731
        _wait_for(lambda: (run / "log.jsonl").is_file() and steps(), first, "the first step")
        workers = _children(first.pid)
        assert len(workers) >= 2, workers  # the train loader's workers
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert any(_alive(pid) for pid in workers)  # orphaned workers still run ...
    assert main(["train", "-c", str(config), "train.epochs=1"]) == 0  # ... and block nothing
    assert len(_starts(run)) == 2


def test_a_second_lock_in_the_same_process_is_refused_and_keeps_the_first(tmp_path):
    """A record lock is the process's own: a second one of the same folder would be granted by
    the OS, and releasing it would drop the first. It is refused before the file is opened."""
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(
            TrainingError,
            match=rf"{run} is in use .*PID {os.getpid()} on .*: "
            "this process",
        ):
            RunLock(tmp_path / "." / "run").acquire()  # the same folder, spelled otherwise
        pid = os.fork()
        if pid == 0:  # another process: the OS still refuses it, so the lock is intact
            try:
                RunLock(run).acquire()
                os._exit(0)
            except TrainingError:
                os._exit(3)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3
    RunLock(run).acquire()  # released: free again


def test_sigterm_stops_the_run_in_one_line_and_it_resumes(tiny_videos, tmp_path):
    """SIGTERM to the trainer's process group (as torchrun and schedulers send it, workers
    included): one line naming the iteration and the last checkpoint, then a rerun resumes."""
    run = tmp_path / "run"
    raw = tiny_config_dict(tiny_videos, run)
    raw["data"]["num_workers"] = 1
    raw["train"].update({"epochs": 100, "val_every": 0, "ckpt_every_iters": 1})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(REPO / "run.py"), "train", "-c", str(config)]
    first = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: len(ckpt.training_checkpoints(run)) >= 2, first, "two checkpoints")
        os.killpg(first.pid, signal.SIGTERM)
        out, _ = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out
    stopped_at = int(re.search(r"stopped by SIGTERM at iteration (\d+); ", errors[0]).group(1))
    last = Path(re.search(r"last checkpoint: (\S+):", errors[0]).group(1))
    assert 0 < ckpt.load_checkpoint(last)["iteration"] <= stopped_at
    assert errors[0].endswith("Rerun the same command to resume")
    newest = ckpt.load_checkpoint(ckpt.training_checkpoints(run)[-1])["iteration"]
    epochs = newest // 4 + 1
    assert main(["train", "-c", str(config), f"train.epochs={epochs}"]) == 0
    assert [s["step"] for s in _starts(run)] == [0, newest]


def _open_files_of_a_child(folder: Path) -> list[str]:
    """The files under ``folder`` that a child forked now (as a DataLoader worker is) holds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its open files under folder, then leave at once
        os.close(read)
        held = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                held.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        os.write(write, "\n".join(h for h in held if h.startswith(str(folder))).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        found = f.read()
    os.waitpid(pid, 0)
    return found.split()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_the_lock_and_the_log_stay_with_the_trainer(tmp_path):
    """What the trainer holds for its life is neither inherited over exec (close-on-exec) nor
    kept by a forked child (a DataLoader worker outliving a killed trainer)."""
    run = tmp_path / "run"
    with RunLock(run) as lock:
        run_log = RunLog(run)
        run_log.open()
        run_log.write("start", 0, epoch=0)
        try:
            assert not os.get_inheritable(lock._fd)
            assert not os.get_inheritable(run_log._file.fileno())
            assert _open_files_of_a_child(run) == []
            run_log.write("train_step", 1, loss=1.0)  # the parent's files still work
        finally:
            run_log.close()
    assert [r["step"] for r in read_log(run / "log.jsonl")] == [0, 1]


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


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_refused_rerun_changes_nothing_in_the_run_folder(tiny_videos, tmp_path, capsys):
    """The record of what was trained (config.yaml, the log, TensorBoard, checkpoints) stays as
    it was when a rerun is refused by the resume checks."""
    config, run = _config(tiny_videos, tmp_path, epochs=1)
    assert main(["train", "-c", str(config)]) == 0
    capsys.readouterr()
    before = _files(run)
    assert "glore: false" in before["config.yaml"].decode()
    assert main(["train", "-c", str(config), "model.glore=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit the model" in err, err
    assert _files(run) == before


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


def test_a_full_disk_stops_the_run_log_and_check_raises_one_line(tmp_path, monkeypatch):
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
    run_log.check()  # nothing failed yet
    for step in (1, 2, 3):
        run_log.write("train_step", step, loss=1.0)  # rank 0 alone: never raises
    with pytest.raises(OutputError) as info:
        run_log.check()  # the trainer calls it on every rank (on_main)
    message = str(info.value)
    assert message.startswith(f"cannot write to {tmp_path / 'run'}: ") and "(ENOSPC)" in message
    assert "\n" not in message and "log.jsonl" in message
    run_log.close()
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
