"""Precise BatchNorm at the end of every epoch, as the released GloRe recipe does it.

Source: facebookresearch/GloRe ``train/model.py`` (``fit`` with ``precise_bn=True``, which
``train_kinetics.py`` sets by default) and ``train_model.py`` (the optimizer groups). After the
training steps of an epoch the released loop runs ``precise_bn_steps`` (500) more batches::

    first N - round(0.2 N) steps   forward + backward; the optimizer steps only the groups named
                                   "precise.bn", at the lr of the last training step (× lr_mult);
                                   the schedule does not advance
    last round(0.2 N) steps        forward only, in train mode: the BatchNorm running mean/var
                                   follow the final weights instead of lagging behind them

then saves the epoch checkpoint and validates. ``train.precise_bn`` is N (0 = off).

How the forward-only steps set the running statistics (``train.precise_bn_average``): ``ema``
as released (BatchNorm's moving average, momentum 0.1: after the released 100 steps nothing of
the older statistics is left), or ``exact``: reset, then the plain mean over those steps, for
runs with few steps (after 10 moving-average steps 35 % of the lagging statistics remain).
Running statistics never enter training (train mode normalises with batch statistics), so
this choice changes evaluation only.

Which parameters the first stage updates (``train.precise_bn_update``):

* ``released``: what the released code does. ``train_model.py`` puts a parameter whose name ends
  in ``.bias`` or ``bn.weight`` into the unnamed groups and every other one into the groups named
  "precise.bn", so the stage trains the conv and linear weights (and the GloRe units' output BN
  weight, ``blocker.weight``) while every bias and every other BN weight stays frozen. The name
  and the comments beside those groups ("*.bias", "bn.weight") suggest the opposite was meant.
* ``norm``: only the weights and biases of norm layers (what the name suggests).
* ``none``: no update stage: every step runs forward only.

Under DDP the update stage runs through the DDP module, so gradients are averaged and the weights
stay the same on every rank. The forward stage runs the plain module on each rank's own batches
and then averages running_mean/var over the ranks, so validation and the checkpoint see the same
statistics everywhere. With ``train.sync_bn`` the average changes nothing: SyncBatchNorm already
normalises with the statistics of the global batch, so every rank's running statistics are the
same. (The released code instead copied rank 0's whole state to every rank through a checkpoint
file before this phase, and saved rank 0's statistics after it.)

The forward stage puts the random state back when it ends (dropout draws), so with
``precise_bn_update: none`` a run trains exactly as without precise BN: only the running
statistics, i.e. evaluation, change.

The batches come from the training loader under epoch keys of their own (``batch_key``): fresh
clips and augmentations that depend only on (seed, epoch), so a resumed run replays them.

A NaN or Inf in the running statistics (``non_finite_statistics``) makes every eval-mode output
NaN; the trainer then skips the epoch's validation and names the layer
(``statistics_problem``). With ``ema`` such a value never leaves the moving average; ``exact``
recomputes the statistics from scratch, also those a resumed checkpoint holds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from videoglore.data import YuvClips
from videoglore.engine.distributed import Runtime
from videoglore.engine.optim import NORM_LAYERS, lrs_at
from videoglore.engine.step import sgd_step
from videoglore.errors import TrainingError

if TYPE_CHECKING:
    from videoglore.engine.run import Run

log = logging.getLogger(__name__)

# (module, loader batch: uint8 (B, 3, T, S, S) or YuvClips) → logits (B, K): to device,
# normalize, autocast, forward (``Run.forward``)
Forward = Callable[[nn.Module, torch.Tensor | YuvClips], torch.Tensor]

FORWARD_SHARE = 0.2  # released: epoch_freeze_step = int(round(0.2 * precise_bn_steps))
KEY_BASE = 1_000_000  # epoch keys of precise-BN batches: KEY_BASE * (pass + 1) + epoch


def stage_lengths(steps: int, update: str) -> tuple[int, int]:
    """(update steps, forward-only steps) of ``steps`` precise-BN steps."""
    if update == "none":
        return 0, steps
    forward = int(round(FORWARD_SHARE * steps))
    return steps - forward, forward


def updated_parameter_names(model: nn.Module, update: str) -> set[str]:
    """Names of the parameters the update stage trains (see the module docstring)."""
    if update == "released":
        return {
            name
            for name, _ in model.named_parameters()
            if not name.endswith((".bias", "bn.weight"))
        }
    if update == "norm":
        return {
            f"{prefix}.{name}" if prefix else name
            for prefix, module in model.named_modules()
            if isinstance(module, NORM_LAYERS)
            for name, _ in module.named_parameters(recurse=False)
        }
    return set()  # "none"


def batch_key(epoch: int, repeat: int) -> int:
    """Sampler epoch key of the ``repeat``-th pass of precise-BN batches after ``epoch``."""
    return KEY_BASE * (repeat + 1) + epoch


def precise_bn_batches(
    loader: DataLoader, epoch: int, steps: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` (clips, labels) batches of the training loader, none of them a training batch.

    Passes over the loader as often as needed, each under its own ``batch_key``.
    """
    done, repeat = 0, 0
    while done < steps:
        loader.sampler.set_epoch(batch_key(epoch, repeat))
        before = done
        for batch in loader:
            yield batch[0], batch[1]
            done += 1
            if done == steps:
                return
        if done == before:
            raise TrainingError("precise BN: the training loader gave no batch")
        repeat += 1


def run_precise_bn(run: Run, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """The precise-BN phase after the training steps of an epoch (``run.state.iteration`` steps
    done), on ``batches`` (``precise_bn_batches``).

    The update stage trains ``run.net`` (DDP-wrapped and/or compiled), the forward stage runs the
    plain ``run.model``. Returns ``{"precise_bn_loss": mean loss of the update stage}`` (empty
    without one).
    """
    tc, iteration = run.cfg.train, run.state.iteration
    update_steps, forward_steps = stage_lengths(tc.precise_bn, tc.precise_bn_update)
    batches = iter(batches)
    result = {}
    if update_steps:
        # at the rates of the last training step
        lrs = lrs_at(run.optimizer, run.scheduler, max(iteration - 1, 0))
        result["precise_bn_loss"] = update_stage(run, lrs, batches, update_steps)
    exact = tc.precise_bn_average == "exact"
    forward_stage(run.model, batches, forward_steps, run.forward, run.rt, exact)
    what = (
        f"{update_steps} update steps ({tc.precise_bn_update}), {forward_steps} forward-only "
        f"({tc.precise_bn_average} statistics)"
    )
    loss = f", loss {result['precise_bn_loss']:.4f}" if result else ""
    log.info("precise BN after iteration %d: %s%s", iteration, what, loss)
    return result


def update_stage(
    run: Run,
    lrs: list[float],
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
) -> float:
    """``steps`` SGD steps (``step.sgd_step``) at the group rates ``lrs`` on the
    ``precise_bn_update`` parameters only; returns the mean loss. The groups' own rates are put
    back afterwards.

    The other parameters get no update at all (no weight decay, no momentum): their gradients
    are dropped before the step, as the released optimizer skips their groups.
    """
    names = updated_parameter_names(run.model, run.cfg.train.precise_bn_update)
    trained = [p for n, p in run.model.named_parameters() if n in names]
    where = f"during precise BN after iteration {run.state.iteration} (train.precise_bn)"
    run.net.train()
    total, count = 0.0, 0.0
    with _learning_rates(run.optimizer, lrs):
        for _, (clips, labels) in zip(range(steps), batches, strict=False):
            loss_sum, _, n = sgd_step(run, clips, labels, where, only=trained)
            total, count = total + loss_sum, count + n
    run.optimizer.zero_grad(set_to_none=True)
    return total / max(count, 1.0)


@torch.no_grad()
def forward_stage(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    forward: Forward,
    rt: Runtime,
    exact: bool = False,
) -> None:
    """``steps`` forward passes in train mode, then the statistics are averaged over the ranks.

    The BatchNorm running mean/var follow each batch as in training, by their moving average
    (released), or with ``exact`` are reset and become the plain mean of the ``steps`` batches'
    statistics (the "precise BN" of Wu & Johnson 2021, pycls): nothing of the statistics before
    this stage remains, so few steps suffice. The random state (dropout) is put back afterwards,
    so this stage changes nothing but the running statistics: training goes on exactly as
    without it.
    """
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    if exact and steps > 0:
        for module in norms:
            module.reset_running_stats()
            module.momentum = None  # cumulative average: factor 1 / batches seen
    devices = [rt.device] if rt.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, device_type=rt.device.type):
            for _, (clips, _labels) in zip(range(steps), batches, strict=False):
                forward(model, clips)
    finally:
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
    average_running_stats(model, rt)


def average_running_stats(model: nn.Module, rt: Runtime) -> None:
    """Replace every BatchNorm's running_mean/var by its mean over the ranks (no-op alone).

    Needed for per-process BatchNorm; SyncBatchNorm layers (``train.sync_bn``) already hold the
    same statistics on every rank, and their mean is that value again.
    """
    if not rt.distributed:
        return
    buffers = [
        buf
        for module in model.modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats
        for buf in (module.running_mean, module.running_var)
        if buf is not None
    ]
    if not buffers:
        return
    flat = torch.cat([buf.detach().float().flatten() for buf in buffers])
    dist.all_reduce(flat)
    flat /= rt.world_size
    offset = 0
    for buf in buffers:
        buf.copy_(flat[offset : offset + buf.numel()].view_as(buf))
        offset += buf.numel()


# |running mean| or running variance of activations near float overflow (GloRe's output BN sees
# variances of 1e8 in a healthy tiny fine-tune: its unnormalised node states grow with T*H*W)
HUGE_STATISTIC = 1e20


def running_statistics(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, buffer)`` of every BatchNorm running_mean / running_var of ``model``, in module
    order (roughly the order of the forward pass)."""
    return [
        (f"{name}.{kind}", buf)
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.track_running_stats
        for kind in ("running_mean", "running_var")
        if (buf := getattr(module, kind)) is not None
    ]


def non_finite_statistics(model: nn.Module) -> list[str]:
    """Names of the BatchNorm running statistics of ``model`` that hold a NaN or Inf: in eval
    mode every output then is NaN (the next layer mixes every channel)."""
    return [name for name, buf in running_statistics(model) if not bool(buf.isfinite().all())]


def statistics_problem(model: nn.Module) -> tuple[str, str] | None:
    """What is wrong with the BatchNorm running statistics of ``model``, as ``(kind, detail)``:
    ("non-finite", "3 of 114 buffers, first NAME (5 of 64 values NaN/Inf)") or ("huge", ...);
    None when every value is finite and below ``HUGE_STATISTIC``."""
    stats = running_statistics(model)
    bad = [(name, buf) for name, buf in stats if not bool(buf.isfinite().all())]
    if bad:
        name, buf = bad[0]
        values = int((~buf.isfinite()).sum())
        detail = f"first {name} ({values} of {buf.numel()} values NaN/Inf)"
        return "non-finite", f"{len(bad)} of {len(stats)} buffers, {detail}"
    peaks = [(float(buf.abs().max()), name) for name, buf in stats if buf.numel()]
    huge = [(peak, name) for peak, name in peaks if peak > HUGE_STATISTIC]
    if huge:
        peak, name = max(huge)
        detail = f"above {HUGE_STATISTIC:.0e}, largest {name} ({peak:.2e})"
        return "huge", f"{len(huge)} of {len(stats)} buffers {detail}"
    return None


@contextlib.contextmanager
def _learning_rates(optimizer: torch.optim.Optimizer, lrs: list[float]):
    """Set each group's lr for the duration of the block, then put the old ones back."""
    saved = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    try:
        yield
    finally:
        for group, lr in zip(optimizer.param_groups, saved, strict=True):
            group["lr"] = lr
