"""Run the per-video work in parallel and remember what is finished (resume after Ctrl-C).

``run_tasks`` feeds the videos to :func:`data_prep.encode.process_video` (its settings bound
with ``functools.partial``) in a process pool and yields the results as they finish;
``ResultLedger`` appends each result to ``OUT/.prepare/results.jsonl`` at once, so a second run
only does the videos whose result is missing or stale (source file changed, encode settings
changed, output file gone). It records verdicts only ("ok", "broken": the file was read): a
source that could not be read or was gone is not remembered, so the next run tries it again.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from data_prep.codec import quiet_video_libraries
from data_prep.encode import VideoResult, source_rotation
from data_prep.files import as_output_error, atomic_open


def run_tasks(work: Callable[[Any], Any], items: list, workers: int | None, progress: bool):
    """Yield ``work(item)`` for every item as it finishes; worker processes, or this process
    when workers == 1. An exception in a worker (OutputError) stops the pool at once."""
    from tqdm import tqdm

    workers = min(workers or os.cpu_count() or 1, len(items))
    with tqdm(
        total=len(items),
        unit="video",
        desc="prepare",
        disable=not progress,
        smoothing=0.05,
        dynamic_ncols=True,
    ) as bar:
        if workers <= 1:
            quiet_video_libraries()
            for item in items:
                yield work(item)
                bar.update()
            return
        pool = _worker_context().Pool(workers, initializer=_start_worker)
        try:
            for result in pool.imap_unordered(work, items, chunksize=1):
                yield result
                bar.update()
            pool.close()
        except BaseException:
            pool.terminate()  # Ctrl-C or OutputError: stop the workers now; prepare removes
            # their partial files (all in OUT/.prepare/tmp) afterwards
            raise
        finally:
            pool.join()


def _worker_context():
    """forkserver where available: workers start clean (no threads, CUDA or decoder state
    inherited from a parent that may be a training process, as with fork) and fast (forked from
    a server that imported the codecs once); spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["data_prep.encode", "av", "decord"])
        return ctx
    return multiprocessing.get_context("spawn")


def _start_worker() -> None:
    """Ctrl-C is handled by the main process alone, which stops the pool; the video libraries
    keep their messages off the terminal (each bad video is one line in skipped.csv)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_video_libraries()


# 2: output failures stop the run; version-1 ledgers could hold them as "broken" videos.
# 3: read failures (permission, I/O) and full disks that PyAV wraps are no verdicts; sources are
# re-encoded upright. "broken" lines of older versions are checked again; their "ok" lines stay
# valid once the source is seen to need no rotation (``recheck_rotations``).
LEDGER_VERSION = 3
VERDICTS = ("ok", "broken")  # what a ledger line may say: the file was read


class ResultLedger:
    """Append-only JSON-lines record of finished videos: one line per video, written at once.

    A line cut by a killed run is ignored when read back; a line the disk had no room for is
    taken back (truncated away) before the OutputError is raised, so the file never holds a
    torn line that a later append would glue onto.
    """

    def __init__(self, path: Path, signature: dict, out_dir: str | Path):
        self.path, self.signature, self.out_dir = path, signature, Path(out_dir)
        self.records: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        self.fd: int | None = None
        self.size = 0  # bytes of whole lines in the file
        self.upgraded = False  # lines of older versions were brought up to date (compact them)

    def finished(self, key: str, source: str) -> VideoResult | None:
        """The earlier result for ``key`` if nothing it depends on has changed: same encode
        settings, same source size and mtime (the root may have moved), output still there."""
        record = self.records.get(key)
        if record is None or record.get("settings") != self.signature:
            return None
        if record.get("status") not in VERDICTS:
            return None
        if record["status"] != "ok" and record.get("version", 1) < LEDGER_VERSION:
            return None
        try:
            st = os.stat(source)
        except OSError:  # gone since it was listed: the worker reports it
            return None
        if (record["source_size"], record["source_mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            return None
        if record["status"] == "ok" and self.signature.get("reencode"):
            try:
                if (self.out_dir / key).stat().st_size != record.get("output_size"):
                    return None
            except OSError:
                return None
        # ledgers written before the rename of num_frames to frame_count
        record.setdefault("frame_count", record.get("num_frames", 0))
        fields = {k: record[k] for k in VideoResult.__dataclass_fields__ if k in record}
        return VideoResult(**(fields | {"source": source}))

    def rotation_unknown(self, key: str) -> bool:
        """Whether ``key``'s line is from before rotations were applied (version < 3): its
        source may need a turn that its prepared file (or list row) does not have."""
        return "rotation" not in self.records.get(key, {"rotation": 0})

    def upright(self, key: str) -> None:
        """``key``'s source needs no turn: its older line holds (:meth:`compact` writes it)."""
        self.records[key] |= {"rotation": 0, "version": LEDGER_VERSION}
        self.upgraded = True

    def other_settings(self) -> dict[tuple, int]:
        """How many finished ("ok") videos each other set of encode settings produced, keyed by
        the settings as sorted (name, value) pairs."""
        counts: dict[tuple, int] = {}
        for record in self.records.values():
            settings = record.get("settings")
            if record.get("status") == "ok" and settings != self.signature:
                key = tuple(sorted((settings or {}).items()))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def append(self, result: VideoResult) -> None:
        """Record ``result`` with the source's size and mtime as the worker saw them (a source
        it never saw, deleted meanwhile, is not recorded: a later run looks again; nor is one that
        could not be read). Raises OutputError (and writes nothing) when the line does not fit."""
        if result.source_size < 0 or result.status not in VERDICTS:
            return
        record = asdict(result) | {"settings": self.signature, "version": LEDGER_VERSION}
        if result.status == "ok" and self.signature.get("reencode"):
            record["output_size"] = (self.out_dir / result.key).stat().st_size
        with as_output_error(self.path):
            self._write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        self.records[result.key] = record

    def _write(self, data: bytes) -> None:
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self.size = os.fstat(self.fd).st_size
            if self.size and os.pread(self.fd, 1, self.size - 1) != b"\n":
                data = b"\n" + data  # end the line a killed run left cut
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def compact(self, keys: set[str]) -> None:
        """Rewrite atomically with one line per current video (drops superseded lines)."""
        with atomic_open(self.path, "w") as f:
            for key in sorted(keys & set(self.records)):
                f.write(json.dumps(self.records[key], ensure_ascii=False) + "\n")


def recheck_rotations(
    ledger: ResultLedger, results: dict[str, VideoResult], workers: int | None, progress: bool
) -> list[tuple[str, str]]:
    """Of the ``results`` taken from older ledger lines without a rotation, the ``(key, source)``
    to redo: those whose source needs a turn (its file was stored sideways, or its
    ``--no-reencode`` row lacks the rotation) or cannot be probed now. They leave ``results``;
    the others stay, confirmed upright in the ledger. Probed once, in the workers (decoding to
    the first frame: 25-70 ms per video and core at 360p-720p)."""
    items = [(key, r.source) for key, r in results.items() if ledger.rotation_unknown(key)]
    redo: list[tuple[str, str]] = []
    if not items:  # (no empty progress bar)
        return redo
    for key, rotation in run_tasks(source_rotation, items, workers, progress):
        if rotation == 0:
            ledger.upright(key)
        else:
            redo.append((key, results.pop(key).source))
    return redo
