"""What a training run records: ``log.jsonl`` (every step and epoch) and TensorBoard scalars
(``tb/``) in the run directory (``plots.plot_curves`` draws curves.png from the log).

Only rank 0 writes: ``build_run`` opens the log through ``distributed.on_main``, so that a run
directory that cannot be written stops every rank with one line. The other ranks hold a
``RunLog`` with ``enabled=False`` that does nothing.

A write that fails later (disk full, permission) logs one warning and turns the log off for the
rest of the run instead of raising: it runs on rank 0 alone, outside any collective, so raising
would leave the other ranks waiting; the next checkpoint save, which every rank takes part in,
stops the whole run on a full disk anyway.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from data_prep.files import as_output_error
from videoglore.errors import OutputError

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"


class RunLog:
    """Append-only JSON-lines log mirrored to TensorBoard; writes nothing until ``open()``."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_NAME
        self.enabled = enabled
        self._file = None
        self._tb = None

    def open(self) -> None:
        """Open ``log.jsonl`` for appending (a resumed run goes on in the same file) and the
        TensorBoard writer; a no-op when not enabled.

        Raises:
            OutputError: the run directory or the log cannot be written (one line).
        """
        if not self.enabled:
            return
        with as_output_error(self.path):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        except Exception as exc:  # tensorboard is optional at run time
            log.warning("TensorBoard logging off: %s", exc)

    def write(self, kind: str, step: int, **values: float | int | str) -> None:
        """Record one line ``{"kind": kind, "step": step, "time": ..., **values}``."""
        if self._file is None:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        try:
            with as_output_error(self.path):
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
        except OutputError as exc:
            log.warning("%s; log.jsonl and TensorBoard are off for the rest of this run", exc)
            self.close()
            return
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Close the files (what a failed disk keeps unwritten is dropped, never raised)."""
        file, tb, self._file, self._tb = self._file, self._tb, None, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # already reported by the write that failed
        if tb is not None:
            tb.close()


def read_log(path: str | Path) -> list[dict]:
    """All records of a ``log.jsonl`` (a torn last line from a killed run is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
