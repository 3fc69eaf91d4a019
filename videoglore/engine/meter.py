"""Speed, data wait and ETA of the training loop (the role of torchvision's ``MetricLogger``),
and the progress bars (tqdm, rank 0) of training, validation and testing that show them.

The loop takes its batches through ``StepMeter.timed``: the time spent inside the loader's
``next`` (worker start-up included) is *data wait*, the loader was slower than the device;
everything else since the meter was made (the step, the log line, the progress bar, a mid-epoch
checkpoint) is *busy*. A data wait above a few percent means the run is loader-bound: more
``data.num_workers`` or cheaper decoding help, a faster GPU does not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class StepMeter:
    """Clips/s, data-wait share and ETA since the meter was made (one per epoch)."""

    def __init__(self) -> None:
        self.wait = 0.0  # seconds spent waiting for batches
        self.clips = 0
        self.steps = 0
        self._start = time.perf_counter()

    def timed(self, batches: Iterable[T]) -> Iterator[T]:
        """The batches of ``batches``, the time spent getting each one counted as data wait."""
        tick = time.perf_counter()
        iterator = iter(batches)  # starts the loader's workers: waiting too
        while (batch := next(iterator, _END)) is not _END:
            self.wait += time.perf_counter() - tick
            yield batch
            tick = time.perf_counter()

    def step_done(self, clips: int) -> None:
        self.clips += clips
        self.steps += 1

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self._start, 1e-9)

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.elapsed

    @property
    def data_wait_pct(self) -> float:
        return 100.0 * self.wait / self.elapsed

    def eta(self, steps_left: int) -> float:
        """Seconds for ``steps_left`` more steps at this meter's pace."""
        return steps_left * self.elapsed / max(self.steps, 1)


def progress_bar(
    enabled: bool, total: int, desc: str, *, done: int = 0, unit: str = "it", leave: bool = False
):
    """A tqdm bar (elapsed < remaining, rate) of ``total`` steps or videos, ``done`` of them
    already; disabled on ranks other than 0 (``enabled``). ``leave``: keep the last state on
    screen when closed."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        disable=not enabled,
        dynamic_ncols=True,
        desc=desc,
        unit=unit,
        leave=leave,
    )


def duration(seconds: float) -> str:
    """H:MM:SS."""
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"
