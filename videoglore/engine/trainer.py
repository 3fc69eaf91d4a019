"""Training: ``train(cfg)`` runs (or resumes) a run in ``cfg.output.dir``.

Data flow of one step (per process, ``step.sgd_step``)::

    loader batch (uint8 (B, 3, T, S, S) or YuvClips) ──run.forward: to device, normalize,
      autocast──▶ logits (B, K) ──CE (label smoothing)──▶ loss ──backward (GradScaler for fp16)
      ──▶ clip grad ─▶ SGD step ─▶ per-iteration lr schedule

``train`` takes the run lock, ``run.build_run`` builds or resumes everything (a run the resume
checks refuse has changed nothing in the folder: config.yaml is written only after them), ``fit``
loops over epochs: ``train_one_epoch`` (steps, mid-epoch checkpoints), precise BN
(``train.precise_bn``, ``engine/precise_bn.py``), ``evaluate`` (one centre clip per video), then
the epoch checkpoint. Every rank stops together, in one line, when a write of rank 0 fails
(``check_outputs`` every ``train.log_every`` steps), on SIGTERM and when a rank is lost
(``engine/stops.py``).
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
from videoglore.engine.precise_bn import (
    non_finite_statistics,
    precise_bn_batches,
    run_precise_bn,
    statistics_problem,
)
from videoglore.engine.run import Run, build_run, global_batch, start_summary
from videoglore.engine.run_lock import RunLock
from videoglore.engine.step import sgd_step
from videoglore.engine.stops import RESUME, Stops
from videoglore.errors import OutputError, TrainingError

log = logging.getLogger(__name__)


def train(cfg: Config) -> dict:
    """Train (or resume) the run in ``cfg.output.dir``; returns final metrics on every rank.

    Raises:
        TrainingError: the run cannot go on (also: stopped by SIGTERM, another rank lost), with
            the iteration and the last checkpoint named.
    """
    rt = setup_runtime(cfg.runtime.device, cfg.runtime.threads)
    lock = RunLock(cfg.output.dir)  # one trainer per run directory; rank 0 holds it
    run, stops = None, Stops()
    try:
        with stops.on_sigterm():
            on_main(lock.acquire, rt)
            run = build_run(cfg, rt)  # resume checks: nothing in the folder has changed so far
            try:
                on_main(lambda: _accept_run_dir(run), rt)
                result = fit(run)
            finally:
                run.log.close()
    except BaseException as exc:
        message = stops.message(exc, rt, _where(run))
        if message is None:
            raise
        raise TrainingError(message) from None
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


def _accept_run_dir(run: Run) -> None:
    """Rank 0, once the run passed the resume checks: clear what killed writers left, save the
    config (before this point a refused run has changed nothing in the folder)."""
    # Under the lock no other trainer writes here: temp files are leftovers of killed writers.
    for path in remove_stale_temps(ckpt.checkpoint_dir(run.run_dir)):
        log.info("removed %s, left by a writer that was killed", path)
    save_config(run.cfg, run.run_dir / "config.yaml")


def _where(run: Run | None) -> str:
    """ " at iteration N; last checkpoint: PATH" for the messages of a stopped run."""
    if run is None:
        return " while starting"
    last = run.state.last_checkpoint or "none yet"
    return f" at iteration {run.state.iteration}; last checkpoint: {last}"


def fit(run: Run) -> dict:
    """Train until ``train.epochs``: each epoch's steps, its precise BN (``train.precise_bn``),
    its validation (every ``train.val_every`` epochs), its checkpoint; returns the last epoch's
    metrics."""
    tc, state = run.cfg.train, run.state
    _log_start(run)
    result: dict = {}
    while state.epoch < tc.epochs:
        result = train_one_epoch(run)
        bad_statistics = False
        if tc.precise_bn > 0:  # released recipe: precise BN, then validate and save
            result |= _precise_bn(run)
            # averaged over the ranks: every rank decides alike
            bad_statistics = bool(non_finite_statistics(run.model))
        if bad_statistics:  # every video would score NaN: skip hours of validation
            result["val_skipped"] = 1
        elif run.val_loader is not None and (state.epoch + 1) % tc.val_every == 0:
            # the plain module: no DDP collectives, so uneven val shards cannot hang
            result |= evaluate(run.model, run.val_loader, run.cfg, run.rt, run.fast)
        state.epoch, state.partial = state.epoch + 1, {}
        non_finite = result.get("val_non_finite", 0)
        is_best = "val_top1" in result and result["val_top1"] > state.best_acc
        state.best_acc = result["val_top1"] if is_best else state.best_acc
        path = save(run, ckpt.epoch_path(run.run_dir, state.epoch), result, is_best)
        run.log.write("epoch", state.iteration, epoch=state.epoch, **result)
        if non_finite or bad_statistics:
            raise TrainingError(_non_finite_message(run, path, non_finite))
        on_main(lambda: _plot_curves(run), run.rt)
        check_outputs(run)
        if run.rt.is_main:
            log.info("epoch %d/%d: %s", state.epoch, tc.epochs, _fmt(result))
    return result


def _non_finite_message(run: Run, path: Path, non_finite: int) -> str:
    """Why epoch ``state.epoch`` (saved as ``path``, never as best.pt) stops the run, pointing at
    BatchNorm running statistics when they are the cause."""
    tc, epoch = run.cfg.train, run.state.epoch
    if non_finite:
        videos = len(run.val_loader.dataset)
        head = f"validation of {path} (epoch {epoch}): non-finite scores (NaN/Inf) for "
        head += f"{non_finite} of {videos} videos; best.pt was not updated"
    else:
        head = f"epoch {epoch} ({path}): validation skipped (every video would score NaN); "
        head += "best.pt was not updated"
    problem = statistics_problem(run.model)
    if problem and tc.precise_bn > 0:
        kind, detail = problem
        return f"{head}. BatchNorm running statistics are {kind} after precise BN: {detail}. " + (
            "Set train.precise_bn_average=exact (recomputed from the final weights: a NaN never "
            "leaves a moving average) and resume; if they stay so, activations overflow before "
            "that layer: lower train.lr, set train.clip_grad, or train.precise_bn_update=none "
            "(precise BN then trains no weight)"
        )
    if problem:
        kind, detail = problem
        return (
            f"{head}. BatchNorm running statistics are {kind} after training: {detail}. Lower "
            "train.lr or set train.clip_grad"
        )
    if tc.precise_bn == 0:
        return (
            f"{head}. Lower train.lr or set train.clip_grad; a net trained from scratch (GloRe "
            "units above all) may need precise BN, as BatchNorm statistics that lag the weights "
            "overflow in eval mode: train.precise_bn=6 train.precise_bn_update=none "
            "train.precise_bn_average=exact, as configs/demo.yaml"
        )
    return f"{head}. Lower train.lr or set train.clip_grad"


def check_outputs(run: Run) -> None:
    """Stop every rank when a write of rank 0's run log failed (disk full, permission, read-only
    folder): one line naming the folder, the iteration and the last checkpoint."""

    def check() -> None:
        try:
            run.log.check()
        except OutputError as exc:
            raise OutputError(f"{exc}; training stopped{_where(run)}; {RESUME}") from None

    on_main(check, run.rt)


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
    desc = f"epoch {state.epoch + 1}/{tc.epochs}"
    # closed however the epoch ends: an error line never lands after a half-drawn bar
    with progress_bar(run.rt.is_main, run.iters_per_epoch, desc, done=done) as bar:
        for clips, labels, *_ in meter.timed(loader):
            lr = run.optimizer.param_groups[0]["lr"]  # the lr this step uses
            loss_sum, correct_sum, n = train_step(run, clips, labels)
            meter.step_done(int(n))
            for key, value in (("loss", loss_sum), ("correct", correct_sum), ("count", n)):
                sums[key] += value
            _report_step(run, meter, bar, loss_sum / n, lr)
            if state.iteration % tc.log_every == 0:
                check_outputs(run)
            every, at_end = tc.ckpt_every_iters, state.iteration % run.iters_per_epoch == 0
            if every > 0 and state.iteration % every == 0 and not at_end:
                state.partial = dict(sums)
                save(run, ckpt.iter_path(run.run_dir, state.epoch, state.iteration), {}, False)
    count = max(sums["count"], 1.0)
    return {"train_loss": sums["loss"] / count, "train_top1": sums["correct"] / count}


def _report_step(run: Run, meter: StepMeter, bar, loss: float, lr: float) -> None:
    """One log.jsonl line per step; the progress bar every ``train.log_every`` steps."""
    tc, state = run.cfg.train, run.state
    speed, wait = meter.clips_per_s, meter.data_wait_pct
    values = dict(loss=loss, lr=lr, clips_per_s=speed, data_wait=wait)
    run.log.write("train_step", state.iteration, epoch=state.epoch, **values)
    if state.iteration % tc.log_every == 0 or meter.steps == 1:
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
    with progress_bar(rt.is_main, len(loader.sampler), "validation", unit="video") as bar:
        for clips, labels, _, batch_skipped in loader:  # collate_test batches
            skipped += len(batch_skipped)
            if labels.numel() == 0:
                bar.update(len(batch_skipped))
                continue
            labels = labels.to(rt.device, non_blocking=True)
            logits = forward_batch(model, clips, cfg.data, rt.device, fast).float()  # (B, K)
            non_finite += (~logits.isfinite().all(dim=1)).sum().item()
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            top1 += topk_correct(logits, labels, 1).sum().item()
            top5 += topk_correct(logits, labels, 5).sum().item()
            count += len(labels)
            bar.update(len(labels) + len(batch_skipped))
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
        try:
            ckpt.save_checkpoint(state, path, *([best] if is_best else []))
        except OutputError as exc:  # the files of that name are as they were
            raise OutputError(f"{exc}; training stopped{_where(run)}; {RESUME}") from None
        ckpt.prune_checkpoints(run.run_dir, run.cfg.train.keep_last)
        run.log.write("checkpoint", run.state.iteration, path=str(path), best=is_best)

    on_main(write, run.rt)
    run.state.last_checkpoint = str(path)
    return path


def _log_start(run: Run) -> None:
    if run.rt.is_main:
        log.info("training\n%s", start_summary(run))
    run.log.write(
        "start",
        run.state.iteration,
        epoch=run.state.epoch,
        world_size=run.rt.world_size,
        global_batch=global_batch(run.cfg, run.rt),
        iters_per_epoch=run.iters_per_epoch,
    )


def _plot_curves(run: Run) -> None:
    """curves.png (rank 0, through ``on_main``); a folder that cannot be written stops the run, a
    plot that fails otherwise (matplotlib) is a warning."""
    try:
        plot_curves(run.run_dir)
    except OutputError as exc:
        raise OutputError(f"{exc}; training stopped{_where(run)}; {RESUME}") from None
    except Exception as exc:  # a missing picture must not stop days of training
        log.warning("curves.png not drawn: %s", first_line(exc))


def _fmt(values: dict) -> str:
    return "  ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
