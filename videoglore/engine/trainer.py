"""Training: ``train(cfg)`` runs (or resumes) a run in ``cfg.output.dir``.

Data flow of one step (per process)::

    uint8 clips (B, 3, T, S, S) ──non_blocking copy──▶ device ──normalize──▶ float (B, 3, T, S, S)
      ──model (DDP, autocast)──▶ logits (B, K) ──CE (label smoothing)──▶ loss
      ──backward (GradScaler for fp16) ─▶ clip grad ─▶ SGD step ─▶ per-iteration lr schedule

Resuming is exact: the train order of an epoch is a function of (seed, epoch) only
(``DistributedSampler.set_epoch``), each clip's augmentation is a function of (seed, epoch, index)
(``videoglore.data``), the lr schedule is a function of the iteration, and the checkpoint stores
every RNG state (dropout). A mid-epoch checkpoint (``train.ckpt_every_iters``) resumes by skipping
the batches of that epoch that were already done. Recipe defaults: see ``TrainConfig``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from data_prep.lists import read_classes
from videoglore.config import Config, config_to_dict, save_config
from videoglore.data import build_loader, normalize
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import (
    Runtime,
    all_reduce_sum,
    amp_dtype,
    autocast,
    barrier,
    broadcast_object,
    cleanup,
    gather_objects,
    setup_runtime,
)
from videoglore.engine.metrics import topk_correct
from videoglore.engine.optim import (
    build_optimizer,
    build_scheduler,
    scaled_lr,
    set_schedule_position,
)
from videoglore.engine.precise_bn import batch_forward, precise_bn_batches, run_precise_bn
from videoglore.engine.run_log import RunLog, plot_curves
from videoglore.errors import CheckpointError, ConfigError, TrainingError
from videoglore.models import build_model

log = logging.getLogger(__name__)

OOM_ADVICE = (
    "out of GPU memory{where}; lower train.batch_size (the lr is rescaled automatically), use "
    "shorter clips (data.num_frames) or smaller crops (data.crop_size), keep train.amp=bf16/fp16 "
    "and try train.channels_last=true"
)


@dataclass
class TrainState:
    """Everything the loop mutates; what a checkpoint saves besides the modules."""

    epoch: int = 0  # finished epochs
    iteration: int = 0  # finished optimizer steps
    best_acc: float = -1.0
    last_checkpoint: str = ""
    partial: dict = field(default_factory=dict)  # epoch sums of an interrupted epoch
    saved_iters_per_epoch: int = 0  # of the resumed checkpoint (changes with the world size)


def train(cfg: Config) -> dict:
    """Train (or resume) the run in ``cfg.output.dir``; returns final metrics on every rank."""
    rt = setup_runtime(cfg.train.device)
    try:
        return _train(cfg, rt)
    finally:
        cleanup(rt)


def _train(cfg: Config, rt: Runtime) -> dict:
    tc = cfg.train
    run_dir = Path(cfg.output.dir)
    _seed_everything(tc.seed, tc.deterministic)
    classes = _read_run_classes(cfg)
    model = build_model(cfg.model)
    if model.num_classes != len(classes):
        raise ConfigError(
            f"model.num_classes={model.num_classes} but {len(classes)} classes are listed in the "
            f"class file; set model.num_classes={len(classes)}"
        )
    if tc.sync_bn and rt.distributed:
        if rt.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("train.sync_bn needs CUDA; using per-process BatchNorm on CPU")
    model.to(rt.device)
    if tc.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    train_loader = build_loader(cfg, "train", distributed=rt.distributed, batch_size=tc.batch_size)
    global_batch = tc.batch_size * rt.world_size
    iters_per_epoch = len(train_loader)  # before any skip_first
    if iters_per_epoch == 0:
        raise ConfigError(
            f"{len(train_loader.dataset)} training videos are fewer than one global batch of "
            f"{global_batch}; lower train.batch_size"
        )
    optimizer = build_optimizer(model, tc, global_batch)
    scheduler = build_scheduler(optimizer, iters_per_epoch, tc)
    dtype = amp_dtype(tc.amp, rt.device)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=dtype == torch.float16)
    state = TrainState()
    _resume(run_dir, model, optimizer, scheduler, scaler, state, rt)
    _align_schedule(optimizer, scheduler, state, iters_per_epoch, scaled_lr(tc, global_batch))
    if state.iteration == 0:  # same init on every rank above; different dropout draws below
        _seed_everything(tc.seed + rt.rank, tc.deterministic)

    net = model
    if rt.distributed:
        device_ids = [rt.device.index] if rt.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    if tc.compile:
        net = torch.compile(net)

    val_loader = None
    if tc.val_every > 0 and cfg.data.val_list:
        val_loader = build_loader(cfg, "val", distributed=rt.distributed, batch_size=tc.batch_size)
    run_log = RunLog(run_dir, enabled=rt.is_main)
    if rt.is_main:
        save_config(cfg, run_dir / "config.yaml")
        run_log.write(
            "start",
            state.iteration,
            epoch=state.epoch,
            world_size=rt.world_size,
            global_batch=global_batch,
            iters_per_epoch=iters_per_epoch,
        )
    loop = _Loop(
        cfg, rt, net, model, optimizer, scheduler, scaler, dtype, run_log, classes, iters_per_epoch
    )
    result: dict = {}
    try:
        while state.epoch < tc.epochs:
            result = loop.run_epoch(train_loader, state)
            if tc.precise_bn > 0:  # released recipe: precise BN, then validate and save
                batches = precise_bn_batches(train_loader, state.epoch, tc.precise_bn)
                fwd = batch_forward(cfg, rt, dtype)
                args = (net, model, optimizer, scheduler, scaler, batches, fwd, cfg, rt)
                run_precise_bn(*args, iteration=state.iteration)
            if val_loader is not None and (state.epoch + 1) % tc.val_every == 0:
                # the plain module: no DDP collectives, so uneven val shards cannot hang
                result.update(evaluate(model, val_loader, cfg, rt, dtype))
            state.epoch += 1
            state.partial = {}
            is_best = "val_top1" in result and result["val_top1"] > state.best_acc
            if is_best:
                state.best_acc = result["val_top1"]
            loop.save(state, ckpt.epoch_path(run_dir, state.epoch), result, is_best)
            run_log.write("epoch", state.iteration, epoch=state.epoch, **result)
            if rt.is_main:
                plot_curves(run_dir)
                log.info("epoch %d/%d: %s", state.epoch, tc.epochs, _fmt(result))
    finally:
        run_log.close()
    return {
        "run_dir": str(run_dir),
        "rank": rt.rank,
        "epoch": state.epoch,
        "iteration": state.iteration,
        "best_acc": state.best_acc,
        **result,
    }


@dataclass
class _Loop:
    """One epoch of training plus the checkpoint writes (holds the modules of a run)."""

    cfg: Config
    rt: Runtime
    net: nn.Module  # what runs forward: DDP-wrapped and/or compiled
    model: nn.Module  # the plain module: its state dict is what checkpoints store
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast dtype; None = float32
    run_log: RunLog
    classes: list[str]
    iters_per_epoch: int

    def run_epoch(self, loader: DataLoader, state: TrainState) -> dict:
        tc, rt = self.cfg.train, self.rt
        done = state.iteration - state.epoch * self.iters_per_epoch  # batches already done
        loader.sampler.set_epoch(state.epoch)  # order depends on (seed, epoch) only
        loader.sampler.skip_first(done * tc.batch_size)  # mid-epoch resume
        sums = dict(state.partial or {"loss": 0.0, "correct": 0.0, "count": 0.0})
        self.net.train()
        bar = _progress(rt, self.iters_per_epoch, done, state.epoch, tc.epochs)
        wait, busy, clips_seen = 0.0, 0.0, 0
        first_iteration = state.iteration
        tick = time.perf_counter()
        for batch in loader:
            clips, labels = batch[0], batch[1]
            got = time.perf_counter()
            loss_sum, correct_sum, n = self._step(clips, labels, state)
            lr = self.optimizer.param_groups[0]["lr"]  # the lr this step used
            self.scheduler.step()
            state.iteration += 1
            sums["loss"] += loss_sum
            sums["correct"] += correct_sum
            sums["count"] += n
            now = time.perf_counter()
            wait, busy, clips_seen = wait + got - tick, busy + now - got, clips_seen + int(n)
            tick = now
            speed = clips_seen / max(wait + busy, 1e-9)
            wait_pct = 100.0 * wait / max(wait + busy, 1e-9)
            self.run_log.write(
                "train_step",
                state.iteration,
                epoch=state.epoch,
                loss=loss_sum / n,
                lr=lr,
                clips_per_s=speed,
                data_wait=wait_pct,
            )
            if state.iteration % max(1, tc.log_every) == 0 or clips_seen == n:
                left = tc.epochs * self.iters_per_epoch - state.iteration
                eta = left * (wait + busy) / max(state.iteration - first_iteration, 1)
                bar.set_postfix(
                    loss=f"{loss_sum / n:.3f}",
                    lr=f"{lr:.2e}",
                    clips_s=f"{speed:.1f}",
                    wait=f"{wait_pct:.0f}%",
                    eta=_duration(eta),
                )
            bar.update(1)
            every = tc.ckpt_every_iters
            at_end = state.iteration % self.iters_per_epoch == 0
            if every > 0 and state.iteration % every == 0 and not at_end:
                state.partial = dict(sums)
                path = ckpt.iter_path(self.cfg.output.dir, state.epoch, state.iteration)
                self.save(state, path, {}, is_best=False)
        bar.close()
        count = max(sums["count"], 1.0)
        return {"train_loss": sums["loss"] / count, "train_top1": sums["correct"] / count}

    def _step(self, clips: torch.Tensor, labels: torch.Tensor, state: TrainState):
        """Forward, check the loss on all ranks, backward and update; returns rank sums."""
        tc, device, rt = self.cfg.train, self.rt.device, self.rt
        try:
            clips = clips.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            x = normalize(clips, self.cfg.data.normalization)  # float (B, 3, T, S, S)
            if tc.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast(self.dtype, device):
                logits = self.net(x)  # (B, K)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=tc.label_smoothing)
            correct = topk_correct(logits.detach().float(), labels, 1).sum().item()
            # Sum over ranks before backward: every rank sees the same (finite or not) loss and
            # stops together instead of hanging in DDP's gradient all-reduce.
            loss_sum, correct_sum, n = all_reduce_sum(
                [loss.item() * len(labels), float(correct), float(len(labels))], rt
            )
            if not math.isfinite(loss_sum):
                raise TrainingError(
                    f"loss is {loss_sum / n} at iteration {state.iteration + 1} (epoch "
                    f"{state.epoch + 1}); stopped without saving. Last good checkpoint: "
                    f"{state.last_checkpoint or 'none'}. Lower train.lr or set train.clip_grad"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if tc.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except torch.OutOfMemoryError:
            where = f" at iteration {state.iteration + 1}"
            raise TrainingError(OOM_ADVICE.format(where=where)) from None
        return loss_sum, correct_sum, n

    def save(self, state: TrainState, path: Path, metrics: dict, is_best: bool) -> None:
        """Checkpoint on rank 0 (every rank takes part: RNG states are gathered)."""
        rng = gather_objects(ckpt.rng_state(), self.rt)
        if self.rt.is_main:
            payload = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": state.epoch,
                "iteration": state.iteration,
                "rng": rng,
                "config": config_to_dict(self.cfg),
                "classes": list(self.classes),
                "best_acc": state.best_acc,
                "iters_per_epoch": self.iters_per_epoch,
                "world_size": self.rt.world_size,
                "metrics": {**metrics, "partial": state.partial},
            }
            ckpt.save_checkpoint(payload, path)
            if is_best:
                ckpt.save_checkpoint(payload, ckpt.checkpoint_dir(self.cfg.output.dir) / "best.pt")
            ckpt.prune_checkpoints(self.cfg.output.dir, self.cfg.train.keep_last)
            self.run_log.write("checkpoint", state.iteration, path=str(path), best=is_best)
        state.last_checkpoint = str(path)
        barrier(self.rt)


@torch.no_grad()
def evaluate(net: nn.Module, loader, cfg: Config, rt: Runtime, dtype=None) -> dict:
    """Single centre clip per video (split "val", as the released code validates)."""
    net.eval()
    loss, top1, top5, count = 0.0, 0.0, 0.0, 0.0
    for batch in loader:
        clips, labels = batch[0], batch[1]
        if labels.numel() == 0:
            continue
        labels = labels.to(rt.device, non_blocking=True)
        x = normalize(clips.to(rt.device, non_blocking=True), cfg.data.normalization)
        with autocast(dtype, rt.device):
            logits = net(x).float()  # (B, K)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        top1 += topk_correct(logits, labels, 1).sum().item()
        top5 += topk_correct(logits, labels, 5).sum().item()
        count += len(labels)
    loss, top1, top5, count = all_reduce_sum([loss, top1, top5, count], rt)
    net.train()
    count = max(count, 1.0)
    return {"val_loss": loss / count, "val_top1": top1 / count, "val_top5": top5 / count}


def _resume(run_dir, model, optimizer, scheduler, scaler, state: TrainState, rt: Runtime):
    """Load the newest valid checkpoint of ``run_dir`` into the modules and ``state``."""
    found = ckpt.load_latest(run_dir) if rt.is_main else None
    path = broadcast_object(str(found[1]) if found else "", rt)
    if not path:
        return
    saved = found[0] if rt.is_main else ckpt.load_checkpoint(path)
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: does not fit the configured model ({str(exc).splitlines()[0]}); "
            "point output.dir at a new folder to start a different model"
        ) from None
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    state.epoch, state.iteration = saved["epoch"], saved["iteration"]
    state.best_acc = saved.get("best_acc", -1.0)
    state.partial = saved.get("metrics", {}).get("partial", {})
    state.last_checkpoint = path
    state.saved_iters_per_epoch = saved.get("iters_per_epoch", 0)
    rng = saved["rng"]
    ckpt.set_rng_state(rng[rt.rank] if rt.rank < len(rng) else rng[0])
    log.info("resumed from %s (epoch %d, iteration %d)", path, state.epoch, state.iteration)


def _align_schedule(optimizer, scheduler, state: TrainState, iters_per_epoch: int, base_lr: float):
    """After a resume, put the lr schedule at ``state.iteration`` for *this* run's batch size.

    With the same world size this reproduces what the loaded scheduler state holds. With another
    one (e.g. 8 → 4 GPUs), the lr is rescaled to the new global batch and an interrupted epoch
    restarts from its first batch, because its batches were cut for the old world size.
    """
    if state.saved_iters_per_epoch and state.saved_iters_per_epoch != iters_per_epoch:
        log.warning(
            "resuming with %d iterations per epoch instead of %d (other world size or batch): "
            "epoch %d restarts from its first batch",
            iters_per_epoch,
            state.saved_iters_per_epoch,
            state.epoch + 1,
        )
        state.iteration, state.partial = state.epoch * iters_per_epoch, {}
    set_schedule_position(optimizer, scheduler, state.iteration, base_lr)


def _read_run_classes(cfg: Config) -> list[str]:
    if cfg.data.classes:
        return read_classes(cfg.data.classes)
    if not cfg.data.train_list:
        raise ConfigError("data.train_list is empty; point it at a prepared train.csv")
    return read_classes(Path(cfg.data.train_list).parent / "classes.json")


def _seed_everything(seed: int, deterministic: bool) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def _progress(rt: Runtime, total: int, initial: int, epoch: int, epochs: int):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=not rt.is_main,
        dynamic_ncols=True,
        desc=f"epoch {epoch + 1}/{epochs}",
        leave=False,
    )


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


def _fmt(values: dict) -> str:
    return "  ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
