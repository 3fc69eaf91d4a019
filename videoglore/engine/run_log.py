"""What a training run records: ``log.jsonl`` (every step and epoch), TensorBoard scalars
(``tb/``) and ``curves.png`` (loss, accuracy, learning rate), all in the run directory.

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


def plot_curves(run_dir: str | Path) -> Path:
    """Draw loss, accuracy and learning rate from ``log.jsonl`` into ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    # A resumed run repeats the steps done after its checkpoint: the later record wins.
    latest = {(r["kind"], r["step"]): r for r in read_log(run_dir / "log.jsonl")}
    steps = [r for (kind, _), r in sorted(latest.items()) if kind == "train_step"]
    epochs = [r for (kind, _), r in sorted(latest.items()) if kind == "epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="step")
    axes[0].plot(
        [r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="epoch"
    )
    axes[0].set(title="training loss", xlabel="iteration")
    axes[0].legend()
    axes[1].plot(
        [r["epoch"] for r in epochs], [r["train_top1"] for r in epochs], "o-", label="train"
    )
    val = [r for r in epochs if "val_top1" in r]
    axes[1].plot(
        [r["epoch"] for r in val], [r["val_top1"] for r in val], "o-", label="val (1 clip)"
    )
    axes[1].set(title="top-1 accuracy", xlabel="epoch", ylim=(0, 1))
    axes[1].legend()
    axes[2].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[2].set(title="learning rate", xlabel="iteration")
    fig.tight_layout()
    out = run_dir / "curves.png"
    tmp = run_dir / ".curves.tmp.png"
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(out)
    return out
