"""Where a process runs: the one device selector, the process group and the few collectives the
trainer and the tester use.

Launch several processes with ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); a plain ``python run.py ...`` is a world of one. NCCL is used on
CUDA, gloo on CPU (tests run two gloo processes on one machine).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from data_prep.files import first_line
from videoglore.errors import ConfigError, TrainingError, VideogloreError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    caller_threads: int = 0  # torch's thread count to put back at ``cleanup`` (0: unchanged)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """The one device selector: "auto" (CUDA when visible, else CPU), "cpu" or "cuda"; on CUDA
    the GPU of ``local_rank`` becomes the current device (cuDNN autotuning on)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA device is visible; use cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank % torch.cuda.device_count())
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", torch.cuda.current_device())


def setup_runtime(device: str = "auto", threads: int = 0) -> Runtime:
    """Pick the device, set torch's intra-op ``threads`` (``runtime.threads``; 0: leave the
    count as it is) until ``cleanup``, and, under torchrun, join the process group (once per
    process)."""
    caller_threads = 0
    if threads > 0:
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank)
    use_cuda = dev.type == "cuda"
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("rank %d/%d joined the process group on %s", rank, world_size, dev)
    return Runtime(rank, world_size, local_rank, dev, caller_threads)


def all_reduce_sum(values: list[float], rt: Runtime) -> list[float]:
    """Sum a few numbers over all ranks (float64 on the device)."""
    if not rt.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj, rt: Runtime) -> list:
    """Every rank's ``obj`` (any picklable value), in rank order."""
    if not rt.distributed:
        return [obj]
    out = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, rt: Runtime):
    """Rank 0's ``obj`` on every rank."""
    if not rt.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T], rt: Runtime) -> T:
    """Run ``fn()`` on rank 0 only and give every rank its result.

    Whatever ``fn`` raises on rank 0 stops every rank, so that no process waits forever in the
    next collective: rank 0 re-raises its own exception, the other ranks raise our error as it
    is (a ``VideogloreError``: one line for the user) or, for any other exception, a
    ``TrainingError`` with its first line (rank 0's traceback shows the rest).
    """
    result, error = None, None
    if rt.is_main:
        try:
            result = fn()
        except Exception as exc:
            error = exc
    shared = error if isinstance(error, VideogloreError) or error is None else _one_line(error)
    result, shared = broadcast_object((result, shared), rt)
    if error is not None:
        raise error
    if shared is not None:
        raise shared
    return result


def _one_line(exc: Exception) -> TrainingError:
    return TrainingError(f"rank 0: {first_line(exc)}")


def lost_rank(exc: BaseException, rt: Runtime) -> bool:
    """Whether ``exc`` is a collective that failed because another rank is gone (killed, its node
    lost): NCCL raises ``DistBackendError`` (after its timeout), gloo a ``RuntimeError`` from its
    transport ("Connection closed by peer") at once."""
    if not rt.distributed:
        return False
    return isinstance(exc, dist.DistError) or "gloo/transport" in str(exc)


def cleanup(rt: Runtime) -> None:
    """Leave the process group and put torch's thread count back (``setup_runtime``)."""
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
    if rt.caller_threads:
        torch.set_num_threads(rt.caller_threads)
