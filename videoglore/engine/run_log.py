"""What a training run records: ``log.jsonl`` (every step and epoch) and TensorBoard scalars
(``tb/``) in the run directory (``plots.plot_curves`` draws curves.png from the log).

Only rank 0 writes; the other ranks get a ``RunLog`` with ``enabled=False`` that does nothing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

log = logging.getLogger(__name__)


class RunLog:
    """Append-only JSON-lines log mirrored to TensorBoard."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = (self.run_dir / "log.jsonl").open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        except Exception as exc:  # tensorboard is optional at run time
            log.warning("TensorBoard logging off: %s", exc)

    def write(self, kind: str, step: int, **values: float | int | str) -> None:
        """Record one line ``{"kind": kind, "step": step, "time": ..., **values}``."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def read_log(path: str | Path) -> list[dict]:
    """All records of a ``log.jsonl`` (a torn last line from a killed run is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
