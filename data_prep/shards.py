"""Preparing on many machines: ``--shard I/N`` does 1/N of the videos; N runs share one OUT.

Which videos shard I of N owns: those whose output key (``videos/<split>/<class>/<name>.mp4``)
hashes to I modulo N, with BLAKE2b (Python's ``hash()`` is salted per process). Every shard reads
the same annotations and makes the same plan, so the N parts are disjoint, cover every video and
stay the same on every machine, every rerun and whatever order a file system lists files in.

What each run keeps under OUT (nothing else is shared but the finished videos themselves)::

    OUT/.prepare/results.jsonl  tmp/  lock                   a run without --shard
    OUT/.prepare/shard-I-of-N/results.jsonl  tmp/  lock      shard I of N
    OUT/.prepare/shard-I-of-N/settings.json                  its encode settings (while it runs)

A run appends only to its own ledger, clears only its own temp folder and compacts only its own
ledger; it *reads* every ledger there, so a video that any run finished (a shard, an unsharded
run, a shard of another N) is never done twice. Shards never write the lists: the same command
without ``--shard`` writes them from all ledgers, doing what no shard finished, and ``--merge``
writes them from what is recorded only, naming the shards that have not finished.

Locks (``flock``, released by the OS however a process ends; between hosts on NFSv4): a shard
holds its own folder's lock alone and ``OUT/.prepare/lock`` shared with the other shards; a run
without ``--shard`` holds ``OUT/.prepare/lock`` alone. So the same shard cannot run twice (a
requeued job whose first copy still runs), and an unsharded run never works beside shards.
Where the file system has no locks, a warning says so and the run goes on unguarded.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from data_prep.encode import VideoResult
from data_prep.errors import ConfigError, DataError, OutputError
from data_prep.files import output_error, write_json
from data_prep.runner import ResultLedger

log = logging.getLogger(__name__)

STATE = ".prepare"  # OUT/.prepare holds ledgers, temp folders and locks
LEDGER = "results.jsonl"
SETTINGS = "settings.json"  # a shard's encode settings while it runs (declare_settings)
_FOLDER = re.compile(r"^shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based, as ``$SLURM_ARRAY_TASK_ID``) of ``count`` equal parts."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, key: str) -> bool:
        return shard_index(key, self.count) == self.index

    def check(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"--shard {self}: I runs from 0 to N-1 (--shard 0/{max(self.count, 1)} is the "
                "first part; with a Slurm array --array=0-N-1, give $SLURM_ARRAY_TASK_ID/N)"
            )


def parse_shard(text: str) -> Shard:
    """``"2/8"`` → ``Shard(2, 8)``; ConfigError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--shard expects I/N (e.g. --shard 0/4 ... --shard 3/4), got {text!r}")
    shard = Shard(int(match.group(1)), int(match.group(2)))
    shard.check()
    return shard


def shard_index(key: str, count: int) -> int:
    """The shard (of ``count``) that owns output ``key``: stable across machines and runs."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def state_folder(out: Path, shard: Shard | None) -> Path:
    """Where a run keeps its ledger, temp files and lock."""
    return out / STATE / shard.folder if shard is not None else out / STATE


def shard_folders(out: Path) -> dict[Shard, Path]:
    """Every shard folder under ``OUT/.prepare`` (any N), by shard."""
    found = {}
    try:
        entries = list(os.scandir(out / STATE))
    except OSError:
        return found
    for entry in entries:
        match = _FOLDER.match(entry.name)
        if match and entry.is_dir():
            found[Shard(int(match.group(1)), int(match.group(2)))] = Path(entry.path)
    return dict(sorted(found.items(), key=lambda item: (item[0].count, item[0].index)))


def unfinished_shards(keys: Iterable[str], shards: Iterable[Shard]) -> list[str]:
    """The shards (of each N that has folders) owning any of ``keys``: "1/4", "3/4", ..."""
    counts = sorted({s.count for s in shards})
    owners = {Shard(shard_index(k, n), n) for k in keys for n in counts}
    return [str(s) for s in sorted(owners, key=lambda s: (s.count, s.index))]


class Ledgers:
    """This run's ledger (appended to, compacted) and every other ledger under OUT (read only).

    ``finished`` answers from any of them: a record is valid whichever run wrote it (same encode
    settings, same source size and mtime, output file as recorded). A valid record of another
    ledger is adopted into this run's (written at the next :meth:`compact`), so after an
    unsharded run ``OUT/.prepare/results.jsonl`` alone knows every video and the shard folders
    may be deleted. The keys with no valid record are remembered in ``missed`` (the videos this
    run has to do, or cannot list).
    """

    def __init__(self, own: ResultLedger, others: list[ResultLedger]):
        self.own, self.others = own, others
        self.signature, self.path = own.signature, own.path
        self.missed: list[str] = []
        self.adopted = 0

    @property
    def exists(self) -> bool:
        """Whether any run recorded anything here."""
        return any(ledger.records for ledger in (self.own, *self.others))

    def finished(self, key: str, source: str) -> VideoResult | None:
        for ledger in (self.own, *self.others):
            if key in ledger.records:
                result = ledger.finished(key, source)
                if result is not None:
                    if ledger is not self.own:
                        self.own.records[key] = ledger.records[key]
                        self.adopted += 1
                    return result
        self.missed.append(key)
        return None

    def recorded(self, out: Path, sources: dict[str, str]) -> dict[str, VideoResult]:
        """The valid results of the videos ``sources`` (key → source file) that any run
        recorded, for ``--merge``, which processes nothing.

        Raises:
            DataError: no run recorded anything under ``out`` yet.
        """
        if not self.exists:
            raise DataError(
                f"{out}: nothing is recorded under {out / STATE} yet; run the shards "
                "(--shard I/N) first, or run without --merge"
            )
        results = {key: self.finished(key, source) for key, source in sources.items()}
        return {key: result for key, result in results.items() if result is not None}

    def other_settings(self) -> dict[tuple, int]:
        counts: dict[tuple, int] = {}
        for ledger in (self.own, *self.others):
            for settings, count in ledger.other_settings().items():
                counts[settings] = counts.get(settings, 0) + count
        return counts

    def rotation_unknown(self, key: str) -> bool:
        return self.own.rotation_unknown(key)  # another run's record was adopted into own

    def upright(self, key: str) -> None:
        self.own.upright(key)

    @property
    def upgraded(self) -> bool:
        return self.own.upgraded

    def append(self, result: VideoResult) -> None:
        self.own.append(result)

    def close(self) -> None:
        self.own.close()

    def compact(self) -> None:
        """Rewrite this run's ledger with one line per video, every video it ever recorded kept
        (a split that does not use a video must not make the next split redo it)."""
        self.own.compact(set(self.own.records))


def open_ledgers(out: Path, shard: Shard | None, signature: dict) -> Ledgers:
    """The ledgers of a run on ``out``: its own (by ``shard``) and all the others."""
    own_path = state_folder(out, shard) / LEDGER
    paths = [out / STATE / LEDGER, *(folder / LEDGER for folder in shard_folders(out).values())]
    others = [ResultLedger(p, signature, out) for p in paths if p != own_path and p.is_file()]
    return Ledgers(ResultLedger(own_path, signature, out), others)


def declare_settings(out: Path, shard: Shard, signature: dict) -> None:
    """Write the encode settings of running ``shard`` to its folder, after checking that no
    other running shard declared other ones. Shards started at once have recorded no video yet,
    so the ledgers cannot tell (``prepare`` checks those); a short exclusive lock orders the
    declarations. Stopped shards are not asked: their ledgers speak for them.

    Raises:
        ConfigError: a running shard works with other encode settings (naming it and them).
        OutputError: the declaration cannot be written.
    """
    declared = json.loads(json.dumps(signature))  # as read back from the file
    lock = out / STATE / "settings.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(exc, lock) from None
    try:
        with suppress(OSError):  # no locks on this file system: declarations may race
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for a few file reads, never for long
        for other, folder in shard_folders(out).items():
            theirs = _read_settings(folder / SETTINGS)
            if other == shard or theirs in (None, declared):
                continue
            if _holder_if_locked(folder / "lock") is not None:
                changed = ", ".join(
                    f"{k}={theirs.get(k)} (here {declared.get(k)})"
                    for k in sorted(theirs.keys() | declared.keys())
                    if theirs.get(k) != declared.get(k)
                )
                raise ConfigError(
                    f"{out}: shard {other} is running with other encode settings: {changed}; "
                    "give every shard the same flags"
                )
        write_json(state_folder(out, shard) / SETTINGS, declared)
    finally:
        os.close(fd)


def _read_settings(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- locks


@contextmanager
def run_locks(out: Path, shard: Shard | None) -> Iterator[None]:
    """Hold the locks of a run on ``out`` (see the module docstring) for the ``with`` block.

    Raises:
        OutputError: another run holds them (which one, with its PID and host, is named).
    """
    main = out / STATE / "lock"
    with ExitStack() as stack:
        if shard is None:
            stack.enter_context(_flock(main, True, lambda holder: _busy_without_shard(out, holder)))
        else:
            stack.enter_context(
                _flock(
                    main,
                    False,
                    lambda holder: (
                        f"{out}: a prepare run without --shard is working here "
                        f"({holder}); start the shards when it has finished"
                    ),
                )
            )
            stack.enter_context(
                _flock(
                    state_folder(out, shard) / "lock",
                    True,
                    lambda holder: (
                        f"{out}: shard {shard} is already running ({holder}); wait "
                        "for it or stop it (a requeued job may still run elsewhere)"
                    ),
                )
            )
        yield


def _busy_without_shard(out: Path, holder: str) -> str:
    running = []
    for shard, folder in shard_folders(out).items():
        busy = _holder_if_locked(folder / "lock")
        if busy is not None:
            running.append(f"{shard} ({busy})")
    if running:
        return (
            f"{out}: shards {', '.join(running)} are running; run without --shard once they have "
            "finished, or add --merge to write the lists from what is recorded so far"
        )
    return f"{out}: another prepare run is working here ({holder}); wait for it or stop it"


@contextmanager
def _flock(path: Path, exclusive: bool, busy) -> Iterator[None]:
    """flock ``path`` (exclusive: with our PID, host and start time in it) or raise OutputError
    with ``busy(holder)``; no lock support on the file system: a warning, and no lock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited (PEP 446)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(busy(_read_holder(fd))) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise output_error(exc, path) from None
            log.warning("%s: cannot lock (%s); make sure no other run uses this folder", path, exc)
            yield
            return
        if exclusive:  # who holds it, for the message of a second run (best effort: a full
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            with suppress(OSError):  # disk is reported by the run's first real write)
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        try:
            yield
        finally:
            if exclusive:
                with suppress(OSError):
                    os.ftruncate(fd, 0)  # a later reader must not take us for the holder
    finally:
        os.close(fd)  # drops the lock


def _holder_if_locked(path: Path) -> str | None:
    """Who holds ``path``'s lock, or None when nobody does (tested without keeping it)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _read_holder(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode())
        return f"PID {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that holds its lock"


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
