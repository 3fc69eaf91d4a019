"""One training process per run directory: a POSIX record lock (``fcntl`` F_SETLK, through
``fcntl.lockf``) on ``RUN/.train.lock``.

Two trainers on one folder would write the same checkpoint names and log every step twice. The
lock is taken before anything is written and held for the whole run; the OS drops it when the
process ends in any way (SIGKILL, OOM killer, power loss), so a killed run never blocks its own
restart. The file holds the holder's PID, host and start time for the message a second process
prints. Under torchrun only rank 0 locks (``trainer`` shares the outcome with every rank).

Why a record lock and not ``flock``: a ``flock`` belongs to the open file, which a forked child
(every DataLoader worker) shares, so after ``kill -9`` of the trainer its orphaned workers held
the folder for the seconds they took to notice (an automatic requeue was refused, naming a dead
PID). A record lock belongs to the process: a child never holds it, and it goes with the process
that took it. Record locks also work between hosts on NFS (v3 through the NLM lock manager, v4
natively; Linux emulates ``flock`` with them there anyway); when a whole client host is lost,
the server frees its locks only when the client's lease ends (about 90 s for Linux's server).

Their one trap: closing *any* descriptor of the file in the holding process drops its lock. So
this module is the only code that opens the file, and a second ``RunLock`` of the same folder in
the same process is refused before it opens anything (the OS would grant it: the lock is the
process's own).

Descriptors a process holds for its life (this lock, ``log.jsonl``) are not for its children
(STYLE.md): ``hold_for_life`` opens nothing itself but marks a descriptor close-on-exec and, in
every child forked later, points it at ``/dev/null``, so that a worker that outlives its parent
keeps nothing of the run directory open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from data_prep.files import output_error
from videoglore.errors import TrainingError

LOCK_NAME = ".train.lock"

_guard = threading.Lock()
_held: dict[tuple[int, int], str] = {}  # run directories this process holds: (dev, inode) → who
_for_life: set[int] = set()  # descriptors ``hold_for_life`` keeps from forked children


class RunLock:
    """Exclusive lock of a run directory; ``with RunLock(run_dir):`` or acquire()/release()."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self._pid = 0  # the process that holds it: a forked child never releases its lock

    def acquire(self) -> None:
        """Take the lock or fail at once.

        Raises:
            TrainingError: another process, or another run of this one, holds it (its PID and
                host named).
            OutputError: the run directory cannot be created or written.
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            folder = os.stat(self.run_dir)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        key = (folder.st_dev, folder.st_ino)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        with _guard:
            if key in _held:  # checked before opening the file: see the module docstring
                raise self._in_use(f"{_held[key]}: this process")
            try:
                fd = self._lock_current_file()
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            except OSError as exc:
                raise output_error(exc, self.path) from None
            _held[key] = _describe(holder)
            hold_for_life(fd)
        self._fd, self._key, self._pid = fd, key, os.getpid()

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held by this process)."""
        if self._fd is None or self._pid != os.getpid():
            return
        fd, self._fd = self._fd, None
        with _guard:
            # Unlinked while still locked: see _lock_current_file. A folder that turned read-only
            # keeps the file, which is harmless (the next trainer locks that same file).
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            let_go(fd)
            os.close(fd)  # drops the lock
            _held.pop(self._key, None)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _lock_current_file(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):  # not "held by another"
                    os.close(fd)
                    raise
                holder = _read_holder(fd)
                os.close(fd)
                raise self._in_use(holder) from None
            # A releasing holder unlinks the file before unlocking it: if we locked that old
            # file, the path now names another one (or none) and the lock protects nothing.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                return fd
            os.close(fd)

    def _in_use(self, holder: str) -> TrainingError:
        return TrainingError(
            f"{self.run_dir} is in use by another training process ({holder}); wait for it to "
            "finish or stop it, or set output.dir to another folder"
        )


def hold_for_life(fd: int) -> None:
    """Keep ``fd`` (held by this process until ``let_go``) from its children: close-on-exec, and
    replaced by ``/dev/null`` in every child forked while it is held."""
    os.set_inheritable(fd, False)
    _for_life.add(fd)


def let_go(fd: int) -> None:
    """The end of ``hold_for_life(fd)`` (call it before closing ``fd``)."""
    _for_life.discard(fd)


def _in_forked_child() -> None:
    """After ``fork``, in the child: point the parent's lifelong descriptors at /dev/null.

    The numbers stay valid (whatever object still names one closes /dev/null, never a file that
    reused the number), and the child holds nothing of the run directory. A child never holds
    the parent's record locks in the first place; it also forgets the folders they protect.
    """
    if _for_life:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        for fd in _for_life:
            os.dup2(null, fd, inheritable=False)
        os.close(null)
    _for_life.clear()
    _held.clear()
    global _guard
    _guard = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_in_forked_child)


def _read_holder(fd: int) -> str:
    try:
        return _describe(json.loads(os.pread(fd, 4096, 0).decode()))
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting up"


def _describe(holder: dict) -> str:
    return f"PID {holder['pid']} on {holder['host']} since {holder['since']}"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
