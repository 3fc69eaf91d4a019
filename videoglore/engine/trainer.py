"""Training: ``train(cfg)`` runs (or resumes) a run in ``cfg.output.dir``.

Data flow of one step (per process, ``step.sgd_step``)::

    loader batch (uint8 (B, 3, T, S, S) or YuvClips) ──run.forward: to device, normalize,
      autocast──▶ logits (B, K) ──CE (label smoothing)──▶ loss ──backward (GradScaler for fp16)
      ──▶ clip grad ─▶ SGD step ─▶ per-iteration lr schedule

``train`` takes the run lock, ``run.build_run`` builds or resumes everything, ``fit`` loops over
epochs: ``train_one_epoch`` (steps, mid-epoch checkpoints), precise BN (``train.precise_bn``,
``engine/precise_bn.py``), ``evaluate`` (one centre clip per video), then the epoch checkpoint.
Resuming is exact: the train order of an epoch is a function of (seed, epoch) only
(``TrainSampler.set_epoch``), each clip's augmentation is a function of (seed, epoch, index)
(``videoglore.data``), the precise-BN batches are a function of (seed, epoch), the lr schedule
is a function of the iteration, and the checkpoint stores every RNG state (dropout). A
mid-epoch checkpoint (``train.ckpt_every_iters``) resumes by skipping the batches of that epoch
that were already done.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data_prep.files import first_line, remove_stale_temps
from videoglore.config import Config, config_to_dict, save_config
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import (
    Runtime,
    all_reduce_sum,
    cleanup,
    gather_objects,
    on_main,
    setup_runtime,
)
from videoglore.engine.forward import FastPath, forward_batch
from videoglore.engine.meter import StepMeter, duration, progress_bar
from videoglore.engine.metrics import topk_correct
from videoglore.engine.plots import plot_curves
from videoglore.engine.precise_bn import precise_bn_batches, run_precise_bn
from videoglore.engine.run import Run, build_run, global_batch
from videoglore.engine.run_lock import RunLock
from videoglore.engine.step import sgd_step
from videoglore.errors import TrainingError

log = logging.getLogger(__name__)


def train(cfg: Config) -> dict:
    """Train (or resume) the run in ``cfg.output.dir``; returns final metrics on every rank."""
    rt = setup_runtime(cfg.runtime.device, cfg.runtime.threads)
    lock = RunLock(cfg.output.dir)  # one trainer per run directory; rank 0 holds it
    try:
        on_main(lambda: _take_run_dir(lock, cfg), rt)
        run = build_run(cfg, rt)
        try:
            result = fit(run)
        finally:
            run.log.close()
    finally:
        lock.release()  # a no-op where not held
        cleanup(rt)
    state = run.state
    return {
        "run_dir": str(run.run_dir),
        "rank": rt.rank,
        "epoch": state.epoch,
        "iteration": state.iteration,
        "best_acc": state.best_acc,
        **result,
    }


def _take_run_dir(lock: RunLock, cfg: Config) -> None:
    """Rank 0: lock the run directory, clear what killed writers left, save the config."""
    lock.acquire()
    # Under the lock no other trainer writes here: temp files are leftovers of killed writers.
    for path in remove_stale_temps(ckpt.checkpoint_dir(lock.run_dir)):
        log.info("removed %s, left by a writer that was killed", path)
    save_config(cfg, lock.run_dir / "config.yaml")


def fit(run: Run) -> dict:
    """Train until ``train.epochs``: each epoch's steps, its precise BN (``train.precise_bn``),
    its validation (every ``train.val_every`` epochs), its checkpoint; returns the last epoch's
    metrics."""
    tc, state = run.cfg.train, run.state
    _log_start(run)
    result: dict = {}
    while state.epoch < tc.epochs:
        result = train_one_epoch(run)
        if tc.precise_bn > 0:  # released recipe: precise BN, then validate and save
            result |= _precise_bn(run)
        if run.val_loader is not None and (state.epoch + 1) % tc.val_every == 0:
            # the plain module: no DDP collectives, so uneven val shards cannot hang
            result |= evaluate(run.model, run.val_loader, run.cfg, run.rt, run.fast)
        state.epoch, state.partial = state.epoch + 1, {}
        non_finite = result.get("val_non_finite", 0)
        is_best = "val_top1" in result and result["val_top1"] > state.best_acc
        state.best_acc = result["val_top1"] if is_best else state.best_acc
        path = save(run, ckpt.epoch_path(run.run_dir, state.epoch), result, is_best)
        run.log.write("epoch", state.iteration, epoch=state.epoch, **result)
        if non_finite:
            raise TrainingError(
                f"validation of {path} (epoch {state.epoch}): non-finite scores (NaN/Inf) for "
                f"{non_finite} of {len(run.val_loader.dataset)} videos; best.pt was not updated. "
                "Lower train.lr or set train.clip_grad"
            )
        if run.rt.is_main:
            _plot_curves(run.run_dir)
            log.info("epoch %d/%d: %s", state.epoch, tc.epochs, _fmt(result))
    return result


def _precise_bn(run: Run) -> dict:
    """The epoch's precise-BN steps (``engine/precise_bn.py``) on fresh training batches;
    returns ``{"precise_bn_loss": ...}`` when it has an update stage."""
    batches = precise_bn_batches(run.train_loader, run.state.epoch, run.cfg.train.precise_bn)
    return run_precise_bn(run, batches)


def train_one_epoch(run: Run) -> dict:
    """The rest of epoch ``state.epoch`` (all of it, or what a mid-epoch checkpoint left)."""
    tc, state, loader = run.cfg.train, run.state, run.train_loader
    done = state.iteration - state.epoch * run.iters_per_epoch  # batches already done
    loader.sampler.set_epoch(state.epoch)  # order depends on (seed, epoch) only
    loader.sampler.skip_first(done * tc.batch_size)  # mid-epoch resume
    sums = dict(state.partial or {"loss": 0.0, "correct": 0.0, "count": 0.0})
    run.net.train()
    meter = StepMeter()
    bar = progress_bar(run.rt.is_main, run.iters_per_epoch, done, state.epoch, tc.epochs)
    for clips, labels, *_ in meter.timed(loader):
        lr = run.optimizer.param_groups[0]["lr"]  # the lr this step uses
        loss_sum, correct_sum, n = train_step(run, clips, labels)
        meter.step_done(int(n))
        for key, value in (("loss", loss_sum), ("correct", correct_sum), ("count", n)):
            sums[key] += value
        _report_step(run, meter, bar, loss_sum / n, lr)
        every, at_end = tc.ckpt_every_iters, state.iteration % run.iters_per_epoch == 0
        if every > 0 and state.iteration % every == 0 and not at_end:
            state.partial = dict(sums)
            save(run, ckpt.iter_path(run.run_dir, state.epoch, state.iteration), {}, False)
    bar.close()
    count = max(sums["count"], 1.0)
    return {"train_loss": sums["loss"] / count, "train_top1": sums["correct"] / count}


def _report_step(run: Run, meter: StepMeter, bar, loss: float, lr: float) -> None:
    """One log.jsonl line per step; the progress bar every ``train.log_every`` steps."""
    tc, state = run.cfg.train, run.state
    speed, wait = meter.clips_per_s, meter.data_wait_pct
    values = dict(loss=loss, lr=lr, clips_per_s=speed, data_wait=wait)
    run.log.write("train_step", state.iteration, epoch=state.epoch, **values)
    if state.iteration % max(1, tc.log_every) == 0 or meter.steps == 1:
        eta = meter.eta(tc.epochs * run.iters_per_epoch - state.iteration)
        bar.set_postfix(
            loss=f"{loss:.3f}",
            lr=f"{lr:.2e}",
            clips_s=f"{speed:.1f}",
            wait=f"{wait:.0f}%",
            eta=duration(eta),
        )
    bar.update(1)


def train_step(run: Run, clips, labels: torch.Tensor) -> tuple[float, float, float]:
    """One training step (``step.sgd_step``), then the per-iteration schedule; returns sums over
    the ranks of (loss × clips, correct clips, clips)."""
    state = run.state
    where = f"at iteration {state.iteration + 1} (epoch {state.epoch + 1})"
    sums = sgd_step(run, clips, labels, where)
    run.scheduler.step()
    state.iteration += 1
    return sums


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: Config, rt: Runtime, fast: FastPath) -> dict:
    """Single centre clip per video (split "val", as the released code validates): val_loss,
    val_top1, val_top5; or, when any video gets non-finite scores (NaN/Inf), only their count
    ``val_non_finite`` (no accuracy means anything then, and no best model is picked). Videos
    that cannot be read (deleted, corrupt) are left out and counted: ``val_skipped``."""
    model.eval()
    loss, top1, top5, count, non_finite, skipped = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for clips, labels, _, batch_skipped in loader:  # collate_test batches
        skipped += len(batch_skipped)
        if labels.numel() == 0:
            continue
        labels = labels.to(rt.device, non_blocking=True)
        logits = forward_batch(model, clips, cfg.data, rt.device, fast).float()  # (B, K)
        non_finite += (~logits.isfinite().all(dim=1)).sum().item()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        top1 += topk_correct(logits, labels, 1).sum().item()
        top5 += topk_correct(logits, labels, 5).sum().item()
        count += len(labels)
    sums = all_reduce_sum([loss, top1, top5, count, non_finite, skipped], rt)
    loss, top1, top5, count, non_finite, skipped = sums
    model.train()
    result = {"val_skipped": int(skipped)} if skipped else {}
    if non_finite:
        return {"val_non_finite": int(non_finite), **result}
    count = max(count, 1.0)
    return {"val_loss": loss / count, "val_top1": top1 / count, "val_top5": top5 / count, **result}


def save(run: Run, path: Path, metrics: dict, is_best: bool) -> Path:
    """Checkpoint on rank 0 (every rank takes part: RNG states are gathered, and a failed write
    stops every rank); returns ``path``."""
    rng = gather_objects(ckpt.rng_state(), run.rt)

    def write() -> None:
        state = ckpt.payload(
            run.state,
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            scaler=run.scaler,
            rng=rng,
            config=config_to_dict(run.cfg),
            classes=run.classes,
            iters_per_epoch=run.iters_per_epoch,
            world_size=run.rt.world_size,
            metrics=metrics,
            weights_source=run.weights_source,
        )
        best = ckpt.checkpoint_dir(run.run_dir) / ckpt.BEST_NAME
        ckpt.save_checkpoint(state, path, *([best] if is_best else []))
        ckpt.prune_checkpoints(run.run_dir, run.cfg.train.keep_last)
        run.log.write("checkpoint", run.state.iteration, path=str(path), best=is_best)

    on_main(write, run.rt)
    run.state.last_checkpoint = str(path)
    return path


def _log_start(run: Run) -> None:
    run.log.write(
        "start",
        run.state.iteration,
        epoch=run.state.epoch,
        world_size=run.rt.world_size,
        global_batch=global_batch(run.cfg, run.rt),
        iters_per_epoch=run.iters_per_epoch,
    )


def _plot_curves(run_dir: Path) -> None:
    """curves.png; a plot that fails (rank 0 alone, outside any collective) is a warning."""
    try:
        plot_curves(run_dir)
    except Exception as exc:  # a missing picture must not stop days of training
        log.warning("curves.png not drawn: %s", first_line(exc))


def _fmt(values: dict) -> str:
    return "  ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
