"""The one checkpoint writer and reader.

Layout under the run directory::

    RUN/checkpoints/epoch_0003.pt        end of epoch 3 (epochs counted from 1)
    RUN/checkpoints/epoch_0003_iter_00001200.pt  3 epochs + a part of the 4th done, 1200
                                         iterations in all (train.ckpt_every_iters), optional
    RUN/checkpoints/best.pt              best validation top-1 so far
    RUN/checkpoints/unreadable/          unreadable checkpoints, moved out of the way, kept

A checkpoint (``payload``, read back by ``restore``) is a dict with ``model`` (unwrapped state
dict), ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (finished epochs), ``iteration``
(finished optimizer steps), ``rng`` (every rank's generators), ``config`` (config_to_dict),
``classes``, ``best_acc``, ``iters_per_epoch``, ``world_size``, ``metrics`` and ``weights_source``
(the file ``model.weights`` started from, with its classes): enough to resume
training exactly and to rebuild the model for testing (nanoGPT style), stored as tensors and
plain data so that it loads with ``weights_only=True``. Writes are atomic
(``data_prep.files.atomic_open``): a killed process or a full disk leaves either the old or the
new file, never half of one.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data_prep.files import as_output_error, atomic_open, first_line, output_error
from videoglore.errors import CheckpointError, OutputError
from videoglore.models.weights import read_torch_file

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
BEST_NAME = "best.pt"
UNREADABLE_DIR = "unreadable"  # under CKPT_DIR: unreadable files, kept for inspection
_NAME = re.compile(r"^epoch_(\d{4})(?:_iter_(\d{8}))?\.pt$")


@dataclass
class TrainState:
    """Everything the training loop mutates besides the modules; saved in every checkpoint."""

    epoch: int = 0  # finished epochs
    iteration: int = 0  # finished optimizer steps
    best_acc: float = -1.0  # validation top-1 of best.pt
    last_checkpoint: str = ""
    partial: dict = field(default_factory=dict)  # epoch sums of an interrupted epoch
    saved_iters_per_epoch: int = 0  # of the resumed checkpoint (changes with the world size)


def payload(
    state: TrainState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rng: list[dict],
    config: dict,
    classes: list[str],
    iters_per_epoch: int,
    world_size: int,
    metrics: dict,
    weights_source: dict | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a training run (``model`` is the plain, unwrapped module; ``rng``
    holds every rank's ``rng_state()``; ``weights_source``: the file ``model.weights`` started
    the net from, with its class names, ``models.loading.WeightsSource.record()``)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "iteration": state.iteration,
        "rng": rng,
        "config": config,
        "classes": list(classes),
        "best_acc": state.best_acc,
        "iters_per_epoch": iters_per_epoch,
        "world_size": world_size,
        "metrics": {**metrics, "partial": state.partial},
        "weights_source": weights_source or {},
    }


def restore(
    saved: dict[str, Any],
    path: str | Path,
    state: TrainState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rank: int,
    seed: int,
) -> None:
    """Load a ``payload`` into the modules, ``state`` and this rank's random generators.

    A rank the checkpoint holds no generator state of (resumed on more ranks than saved it) is
    seeded from (``seed``, ``rank``, iteration): its own draws, the same at every such resume.

    Raises:
        CheckpointError: the weights do not fit the configured model, or the optimizer state
            does not fit its parameter groups.
    """
    advice = "point output.dir at a new folder to start a different model"
    load_model_state(model, saved["model"], path, advice)
    try:
        optimizer.load_state_dict(saved["optimizer"])
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: the optimizer state does not fit this run's parameter groups "
            f"({first_line(exc)}); train.lr_mult or train.weight_decay_norm differ from the run "
            "that saved it: set them back, or point output.dir at a new folder"
        ) from None
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    state.epoch, state.iteration = saved["epoch"], saved["iteration"]
    state.best_acc = max(state.best_acc, saved.get("best_acc", -1.0))
    state.partial = saved.get("metrics", {}).get("partial", {})
    state.last_checkpoint = str(path)
    state.saved_iters_per_epoch = saved.get("iters_per_epoch", 0)
    rng = saved["rng"]
    if rank < len(rng):
        set_rng_state(rng[rank])
    else:
        seed_rank(seed, rank, state.iteration)


def load_model_state(
    model: nn.Module, weights: dict[str, torch.Tensor], path: str | Path, advice: str
) -> None:
    """Load a checkpoint's ``model`` entry strictly into ``model``.

    Raises:
        CheckpointError: one line naming the file, the first problem and ``advice``.
    """
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        # torch's message: a heading line, then one line per missing, unexpected or misshapen key
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        detail = (lines[1] if len(lines) > 1 else lines[0])[:200]
        raise CheckpointError(f"{path}: does not fit the model ({detail}); {advice}") from None


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CKPT_DIR


def save_checkpoint(state: dict[str, Any], path: str | Path, *copies: str | Path) -> Path:
    """Write ``state`` to ``path`` (and the same bytes to each of ``copies``, e.g. best.pt).

    The state is serialised in memory first, so its size is known before the disk is touched;
    each file goes through ``atomic_open(durable=True)`` (temp file, fsync, rename, folder fsync).

    Raises:
        OutputError: one line naming the folder, the cause and the bytes the checkpoint needs;
            the temp file is removed and the previous file of that name is left as it was.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    for target in (path, *copies):
        try:
            with atomic_open(target, "wb", durable=True) as f:
                f.write(data)
        except OutputError as exc:
            raise OutputError(
                f"{exc}; the checkpoint needs {data.nbytes} bytes ({data.nbytes / 2**20:.1f} MiB)"
            ) from None
    return Path(path)


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` onto the CPU (``mmap``: tensors mapped
    from the file, read only when used).

    Only tensors and plain data are read (``models.weights.read_torch_file``, weights_only=True):
    a file that would run code is refused, never executed.

    Raises:
        CheckpointError: naming the file when it is missing, unreadable, refused or not ours.
    """
    state = read_torch_file(path, mmap=mmap)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a videoglore checkpoint (no 'model' entry)")
    return state


def training_checkpoints(run_dir: str | Path) -> list[Path]:
    """Epoch and mid-epoch checkpoints of a run, oldest first (by finished iterations)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=_progress_key)


def load_latest(
    run_dir: str | Path, start_over_if_unreadable: bool = False
) -> tuple[dict[str, Any], Path] | None:
    """The newest readable training checkpoint of a run, or None when there is none to resume.

    Unreadable files (torn, corrupt, refused) newer than the one returned are moved to
    ``checkpoints/unreadable/``: kept for inspection, out of the way of the names the resumed run
    writes and of pruning.

    Raises:
        CheckpointError: the run has checkpoints and none is readable: restarting from epoch 0
            would silently throw days away, so this needs ``start_over_if_unreadable``.
    """
    unreadable: list[tuple[Path, CheckpointError]] = []
    for path in reversed(training_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("skipping unreadable checkpoint: %s", exc)
            unreadable.append((path, exc))
            continue
        for bad, _ in unreadable:
            set_aside(bad)
        return state, path
    if unreadable and not start_over_if_unreadable:
        raise CheckpointError(
            f"{checkpoint_dir(run_dir)}: none of the {len(unreadable)} checkpoints can be read "
            f"(newest: {unreadable[0][1]}); nothing was changed. Check the disk and the files, or "
            "rerun with train.start_over_if_unreadable=true to train from epoch 0 (the files are "
            f"then kept in {UNREADABLE_DIR}/ and best.pt is only replaced by a better model)"
        )
    for bad, _ in unreadable:
        set_aside(bad)
    return None


def best_bar(run_dir: str | Path) -> float:
    """The validation top-1 that ``best.pt`` holds (-1 without one): after any restart only a
    better model replaces it. An unreadable ``best.pt`` is set aside and the bar is -1.

    Runs at every start: the weights are mapped, not read (``mmap``).
    """
    path = checkpoint_dir(run_dir) / BEST_NAME
    if not path.is_file():
        return -1.0
    try:
        return float(load_checkpoint(path, mmap=True).get("best_acc", -1.0))
    except CheckpointError as exc:
        log.warning("best checkpoint unreadable: %s", exc)
        set_aside(path)
        return -1.0


def set_aside(path: Path) -> Path:
    """Move an unreadable checkpoint to ``checkpoints/unreadable/`` (never deleted)."""
    folder = path.parent / UNREADABLE_DIR
    target, n = folder / path.name, 1
    while target.exists():
        target, n = folder / f"{path.name}.{n}", n + 1
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, target)
    except OSError as exc:
        raise output_error(exc, target) from None
    log.warning("kept the unreadable %s as %s", path.name, target)
    return target


def find_checkpoint(run_dir: str | Path, prefer_best: bool = True) -> Path:
    """``best.pt`` (if wanted and present) else the newest training checkpoint of a run."""
    best = checkpoint_dir(run_dir) / BEST_NAME
    if prefer_best and best.is_file():
        return best
    found = training_checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"{checkpoint_dir(run_dir)}: no checkpoint found; train first or pass --checkpoint"
        )
    return found[-1]


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest training checkpoints (best.pt is separate)."""
    found = training_checkpoints(run_dir)
    for path in found[: max(0, len(found) - max(1, keep_last))]:
        with as_output_error(path):
            path.unlink(missing_ok=True)


def epoch_path(run_dir: str | Path, epoch: int) -> Path:
    return checkpoint_dir(run_dir) / f"epoch_{epoch:04d}.pt"


def iter_path(run_dir: str | Path, epoch: int, iteration: int) -> Path:
    """Mid-epoch checkpoint after ``epoch`` finished epochs and ``iteration`` steps in all."""
    return checkpoint_dir(run_dir) / f"epoch_{epoch:04d}_iter_{iteration:08d}.pt"


def rng_state() -> dict[str, Any]:
    """Every random generator the training loop draws from (Python, NumPy, torch CPU/CUDA), as
    plain data and tensors, so that the checkpoint loads with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()  # MT19937
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, gauss_next)
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),  # (624,) uint32 values
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_rank(seed: int, rank: int, iteration: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from (``seed``, ``rank``, ``iteration``)."""
    value = int(np.random.SeedSequence([seed, rank, iteration]).generate_state(1)[0])  # < 2^32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore ``rng_state()`` (also the NumPy tuple of checkpoints written before 2026-11)."""
    random.setstate(state["python"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        saved = ("MT19937", keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"])
    np.random.set_state(saved)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _progress_key(path: Path) -> tuple[int, int]:
    # epoch_E.pt sorts after every mid-epoch file of the epoch before and before those of epoch E.
    epoch, iteration = _NAME.match(path.name).groups()
    return int(epoch), int(iteration) if iteration else -1
