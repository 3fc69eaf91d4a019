"""One training process per run directory: an exclusive ``flock`` on ``RUN/.train.lock``.

Two trainers on one folder would write the same checkpoint names and log every step twice. The
lock is taken before anything is written and held for the whole run; the OS drops it when the
process ends in any way (SIGKILL, OOM killer, power loss), so a killed run never blocks its own
restart. The file holds the holder's PID, host and start time for the message a second process
prints. Under torchrun only rank 0 locks (``trainer`` shares the outcome with every rank).
``flock`` works between processes of one host and, on Linux NFSv4, between hosts.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from data_prep.files import output_error
from videoglore.errors import TrainingError

LOCK_NAME = ".train.lock"


class RunLock:
    """Exclusive lock of a run directory; ``with RunLock(run_dir):`` or acquire()/release()."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or fail at once.

        Raises:
            TrainingError: another process holds it (its PID and host named).
            OutputError: the run directory cannot be created or written.
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = self._lock_current_file()
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: see _lock_current_file
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _lock_current_file(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(fd)
                os.close(fd)
                raise TrainingError(
                    f"{self.run_dir} is in use by another training process ({holder}); wait for "
                    "it to finish or stop it, or set output.dir to another folder"
                ) from None
            # A releasing holder unlinks the file before unlocking it: if we locked that old
            # file, the path now names another one (or none) and the lock protects nothing.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                return fd
            os.close(fd)


def _describe_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"PID {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting up"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
