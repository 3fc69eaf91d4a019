"""A training run stopped from outside ends in one line that says so: SIGTERM (torchrun stopping
every rank when one fails, a scheduler preempting the job) and a rank that lost contact with
another one (killed, its node lost).

    stops = Stops()
    try:
        with stops.on_sigterm():      # SIGTERM raises Terminated in the main thread
            ... train ...
    except BaseException as exc:
        message = stops.message(exc, rt, where)   # None: not a stop from outside, re-raise

What was already done is safe either way: every checkpoint is written atomically, the run lock
goes with the process, and a rerun resumes from the newest checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from data_prep.files import first_line
from videoglore.engine.distributed import Runtime, lost_rank

RESUME = "rerun the same command (on every node) to resume"
TERMINATED = (
    "torchrun stops every rank when one fails (its report names which and why), a scheduler "
    "when it preempts the job. Rerun the same command to resume"
)


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, so that no ``except Exception`` on the way (a plot that
    may fail, ``on_main``) turns it into something else."""


def _ignore(signum, frame) -> None:
    pass


class Stops:
    """What stopped a run from outside, for its last message."""

    def __init__(self) -> None:
        self.signal = ""  # the name of the signal received, once one is

    @contextlib.contextmanager
    def on_sigterm(self) -> Iterator[None]:
        """Raise ``Terminated`` on SIGTERM inside the block (main thread only; elsewhere the
        signal keeps its handler); the handler before is put back afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum, frame):
            self.signal = signal.Signals(signum).name
            # torchrun (and `timeout`, schedulers) signal the whole process group: the DataLoader
            # workers end with us, and torch's SIGCHLD handler would raise for them over our
            # exception, mid-unwinding. A no-op handler, not SIG_DFL: CPython reports a SIGCHLD
            # already pending for a handler reset to SIG_DFL ("ignored due to race condition").
            signal.signal(signal.SIGCHLD, _ignore)
            raise Terminated(signum)

        before = signal.signal(signal.SIGTERM, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, before)

    def message(self, exc: BaseException, rt: Runtime, where: str) -> str | None:
        """The one line for a run that ``exc`` stopped from outside (``where``: " at iteration
        N; last checkpoint: PATH"), or None when ``exc`` is not such a stop."""
        if self.signal:  # whatever was raised on the way out (a worker, a collective)
            return f"training stopped by {self.signal}{where}: {TERMINATED}"
        if isinstance(exc, RuntimeError) and lost_rank(exc, rt):
            return (
                f"rank {rt.rank} lost contact with another rank{where} ({first_line(exc)}): a rank "
                f"was killed or its node lost, see its log; {RESUME}"
            )
        return None
