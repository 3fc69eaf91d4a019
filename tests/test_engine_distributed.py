"""Rank-0-only work (``distributed.on_main``): whatever rank 0 raises, every rank stops with one
line instead of waiting forever in the next collective; a rank that dies ends the others' next
collective with one line too. Two gloo processes on one machine."""

import errno
import json
import os
from datetime import timedelta

import torch
import torch.multiprocessing as mp

from videoglore.engine.distributed import Runtime, all_reduce_sum, on_main
from videoglore.engine.stops import Stops
from videoglore.errors import OutputError


def _fail(exc: Exception):
    def fn():
        raise exc

    return fn


def _worker(rank: int, store: str, out: str) -> None:
    # a short timeout: a rank left waiting fails the test instead of hanging it
    init = f"file://{store}"
    torch.distributed.init_process_group(
        "gloo", init_method=init, rank=rank, world_size=2, timeout=timedelta(seconds=20)
    )
    rt = Runtime(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    seen = []
    for fn in (
        lambda: {"answer": 42},
        _fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),  # e.g. a raw unlink error
        _fail(OutputError("cannot write to /run: disk full; free some space")),
        _fail(RuntimeError("first line\nsecond line")),
    ):
        try:
            seen.append(["ok", on_main(fn, rt)])
        except Exception as exc:  # noqa: BLE001 - what each rank raised is the result
            seen.append([type(exc).__name__, str(exc)])
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(seen, f)
    torch.distributed.destroy_process_group()


def test_every_rank_stops_with_rank_0s_error(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    no_space = os.strerror(errno.ENOSPC)
    assert rank0 == [
        ["ok", {"answer": 42}],
        ["OSError", f"[Errno {errno.ENOSPC}] {no_space}"],  # rank 0 keeps its own exception
        ["OutputError", "cannot write to /run: disk full; free some space"],
        ["RuntimeError", "first line\nsecond line"],
    ]
    assert rank1 == [
        ["ok", {"answer": 42}],
        ["TrainingError", f"rank 0: [Errno {errno.ENOSPC}] {no_space}"],
        ["OutputError", "cannot write to /run: disk full; free some space"],  # ours: as is
        ["TrainingError", "rank 0: first line"],
    ]


def _lose_a_rank(rank: int, store: str, out: str) -> None:
    init = f"file://{store}"
    torch.distributed.init_process_group(
        "gloo", init_method=init, rank=rank, world_size=2, timeout=timedelta(seconds=20)
    )
    rt = Runtime(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    all_reduce_sum([1.0], rt)
    if rank == 1:
        os._exit(0)  # gone without a word, as a killed process
    try:
        all_reduce_sum([1.0], rt)
        seen = "no error"
    except RuntimeError as exc:
        seen = Stops().message(exc, rt, " at iteration 7; last checkpoint: run/a.pt")
    with open(f"{out}/rank0.json", "w") as f:
        json.dump(seen, f)
    torch.distributed.destroy_process_group()


def test_a_lost_rank_ends_the_next_collective_in_one_line(tmp_path):
    context = mp.get_context("spawn")
    ranks = [
        context.Process(target=_lose_a_rank, args=(r, str(tmp_path / "store"), str(tmp_path)))
        for r in (0, 1)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    message = json.loads((tmp_path / "rank0.json").read_text())
    assert message.startswith(
        "rank 0 lost contact with another rank at iteration 7; last checkpoint: run/a.pt ("
    ), message
    assert "\n" not in message and len(message) < 500
    assert message.endswith(
        "a rank was killed or its node lost, see its log; rerun the same command (on every "
        "node) to resume"
    )
    assert Stops().message(RuntimeError("CUDA error: an illegal memory access"), _CPU2, "") is None


_CPU2 = Runtime(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
