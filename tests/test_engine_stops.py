"""A run stopped from outside (``engine/stops.py``): SIGTERM is one clean stop even when the
DataLoader workers die of it at the same moment."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO
from videoglore.engine.distributed import Runtime
from videoglore.engine.stops import Stops

ALONE = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


SCENARIO = """
import os, signal, sys
from videoglore.engine.stops import Stops, Terminated

unraisable = []
sys.unraisablehook = unraisable.append

def torch_like(signum, frame):
    raise RuntimeError("DataLoader worker (pid 1234) is killed by signal: Terminated.")

signal.signal(signal.SIGCHLD, torch_like)
both = {signal.SIGTERM, signal.SIGCHLD}
stops = Stops()
try:
    with stops.on_sigterm():
        signal.pthread_sigmask(signal.SIG_BLOCK, both)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)  # its SIGCHLD stays pending while blocked
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both arrive at once
        for _ in range(1000):  # the Python handlers run between these bytecodes
            pass
    print("no stop")
except Terminated:
    print("terminated", stops.signal, len(unraisable))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigterm_with_a_worker_dying_of_it_is_one_clean_stop():
    """torchrun and schedulers signal the whole process group: the trainer gets SIGTERM while
    a DataLoader worker dies of it too. torch's SIGCHLD handler raises for a dead worker; it
    must neither replace the stop nor make Python print a stray traceback.

    Run in a fresh process with no other thread: signals are blocked in one thread only, and a
    thread left by another test (a loader, gloo) would take the SIGCHLD before the SIGTERM."""
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["terminated", "SIGTERM", "0"], done.stdout + done.stderr
    assert done.stderr == ""
    stops = Stops()
    stops.signal = "SIGTERM"
    assert stops.message(
        RuntimeError("worker"), ALONE, " at iteration 3; last checkpoint: a.pt"
    ) == (
        "training stopped by SIGTERM at iteration 3; last checkpoint: a.pt: torchrun stops every "
        "rank when one fails (its report names which and why), a scheduler when it preempts the "
        "job. Rerun the same command to resume"
    )


def test_other_errors_are_not_stops_and_the_handler_is_put_back():
    stops = Stops()
    assert stops.message(RuntimeError("gloo/transport: closed"), ALONE, "") is None  # one rank
    assert stops.message(ValueError("x"), ALONE, "") is None
    before = signal.getsignal(signal.SIGTERM)
    with stops.on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before and stops.signal == ""
