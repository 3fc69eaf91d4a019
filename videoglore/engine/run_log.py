"""What a training run records: ``log.jsonl`` (every step and epoch) and TensorBoard scalars
(``tb/``) in the run directory (``plots.plot_curves`` draws curves.png from the log).

Only rank 0 writes: ``build_run`` opens the log through ``distributed.on_main``, so that a run
directory that cannot be written stops every rank with one line. The other ranks hold a
``RunLog`` with ``enabled=False`` that does nothing.

A write that fails later (disk full, permission, a folder that turned read-only) runs on rank 0
alone, outside any collective, so it does not raise there (the other ranks would wait forever):
the log keeps the error, writes nothing more, and ``check()`` raises it. The trainer calls
``check`` through ``on_main`` every ``train.log_every`` steps and after every epoch, so every
rank stops with that one line soon after.

The TensorBoard events are written here, synchronously, in the format of TensorBoard's own
writer (a record file of ``Event`` protos, ``tensorboard.summary.writer.record_writer``):
torch's ``SummaryWriter`` writes from a thread of its own, whose failures print a traceback and
surface at some later call.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from pathlib import Path

from data_prep.files import as_output_error
from videoglore.engine.run_lock import hold_for_life, let_go
from videoglore.errors import OutputError

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
TB_DIR = "tb"


class RunLog:
    """Append-only JSON-lines log mirrored to TensorBoard; writes nothing until ``open()``."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_NAME
        self.enabled = enabled
        self.failure: OutputError | None = None  # the first write that failed
        self._file = None
        self._tb: EventFile | None = None

    def open(self) -> None:
        """Open ``log.jsonl`` for appending (a resumed run goes on in the same file) and a new
        TensorBoard event file; a no-op when not enabled.

        Raises:
            OutputError: the run directory or the log cannot be written (one line).
        """
        if not self.enabled:
            return
        with as_output_error(self.path):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        hold_for_life(self._file.fileno())
        try:
            self._tb = EventFile(self.run_dir / TB_DIR)
        except ImportError as exc:  # tensorboard is optional at run time
            log.warning("TensorBoard logging off: %s", exc)

    def write(self, kind: str, step: int, **values: float | int | str) -> None:
        """Record one line ``{"kind": kind, "step": step, "time": ..., **values}`` and its
        finite numbers as TensorBoard scalars ``kind/key``; never raises (see ``check``)."""
        if self._file is None:
            return
        now = time.time()
        record = {"kind": kind, "step": step, "time": round(now, 3), **values}
        try:
            with as_output_error(self.path):
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
            if self._tb is not None:
                self._tb.add_scalars(kind, values, step, now)
        except OutputError as exc:
            self.failure = exc
            self.close()

    def check(self) -> None:
        """Raise the error of the first write that failed, if any.

        Raises:
            OutputError: naming the folder and the cause (one line).
        """
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        """Close the files (what a failed disk keeps unwritten is dropped, never raised)."""
        file, tb, self._file, self._tb = self._file, self._tb, None, None
        if file is not None:
            let_go(file.fileno())
            try:
                file.close()
            except OSError:
                pass  # the write that failed is in self.failure
        if tb is not None:
            tb.close()


class EventFile:
    """A TensorBoard event file ``events.out.tfevents.TIME.HOST.PID`` in ``folder``, written
    synchronously: each ``add_scalars`` is one ``Event`` record, flushed.

    Raises:
        OutputError: from the constructor and ``add_scalars``, naming the folder and the cause.
        ImportError: tensorboard is not installed.
    """

    def __init__(self, folder: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = folder / name
        with as_output_error(self.path):
            folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - held for the run
        hold_for_life(self._file.fileno())
        self._records = RecordWriter(self._file)
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_scalars(self, kind: str, values: dict, step: int, wall_time: float) -> None:
        """The finite numbers of ``values`` as scalars ``kind/key`` at ``step``."""
        scalars = [
            self._summary.Value(tag=f"{kind}/{key}", simple_value=float(value))
            for key, value in values.items()
            if isinstance(value, int | float) and math.isfinite(value)
        ]
        if scalars:
            summary = self._summary(value=scalars)
            self._write(self._event(wall_time=wall_time, step=step, summary=summary))

    def close(self) -> None:
        let_go(self._file.fileno())
        try:
            self._file.close()
        except OSError:
            pass

    def _write(self, event) -> None:
        with as_output_error(self.path):
            self._records.write(event.SerializeToString())
            self._file.flush()


def read_log(path: str | Path) -> list[dict]:
    """All records of a ``log.jsonl`` (a torn last line from a killed run is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
