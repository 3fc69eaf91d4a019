"""Speed, data wait and ETA of the training loop (the role of torchvision's ``MetricLogger``),
and the progress bar that shows them.

Each step has two timestamps: when its batch arrived from the loader and when the step was done.
Time from the end of one step to the arrival of the next batch is *data wait* (the loader was
slower than the device); the rest is *busy*. A data wait above a few percent means the run is
loader-bound: more ``data.num_workers`` or cheaper decoding help, a faster GPU does not.
"""

from __future__ import annotations

import time


class StepMeter:
    """Clips/s, data-wait share and ETA since the meter was made (one per epoch)."""

    def __init__(self) -> None:
        self.wait = 0.0  # seconds spent waiting for batches
        self.busy = 0.0  # seconds spent in steps (and what the loop does after them)
        self.clips = 0
        self.steps = 0
        self._tick = time.perf_counter()  # end of the previous step
        self._arrived = self._tick

    def batch_arrived(self) -> None:
        self._arrived = time.perf_counter()
        self.wait += self._arrived - self._tick

    def step_done(self, clips: int) -> None:
        self._tick = time.perf_counter()
        self.busy += self._tick - self._arrived
        self.clips += clips
        self.steps += 1

    @property
    def clips_per_s(self) -> float:
        return self.clips / max(self.wait + self.busy, 1e-9)

    @property
    def data_wait_pct(self) -> float:
        return 100.0 * self.wait / max(self.wait + self.busy, 1e-9)

    def eta(self, steps_left: int) -> float:
        """Seconds for ``steps_left`` more steps at this meter's pace."""
        return steps_left * (self.wait + self.busy) / max(self.steps, 1)


def progress_bar(enabled: bool, total: int, done: int, epoch: int, epochs: int):
    """A tqdm bar for one epoch (disabled on ranks other than 0)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        disable=not enabled,
        dynamic_ncols=True,
        desc=f"epoch {epoch + 1}/{epochs}",
        leave=False,
    )


def duration(seconds: float) -> str:
    """H:MM:SS."""
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"
