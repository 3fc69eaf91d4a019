"""A training run: ``build_run(cfg, rt)`` makes everything ``trainer.fit`` needs, resumed from the
newest readable checkpoint of ``cfg.output.dir`` when there is one.

    config ─▶ classes, model (models.loading: pretrained, weights; SyncBN, device, channels_last)
      ─▶ train loader
      ─▶ SGD + per-iteration schedule (lr scaled to the global batch) ─▶ resume (checkpoint.restore)
      ─▶ DDP / torch.compile wrapper ─▶ val loader, run log ─▶ Run

Order matters for exact resumes: the model is initialised from ``train.seed`` on every rank, the
checkpoint then restores every random generator, and a fresh run reseeds per rank (dropout).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_prep.errors import bounded_repr
from data_prep.files import first_line
from data_prep.lists import read_classes
from videoglore import zoo
from videoglore.config import Config, TrainConfig, config_to_dict
from videoglore.data import YuvClips, build_loader
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import Runtime, on_main
from videoglore.engine.forward import FastPath, fast_path, forward_batch, place_model
from videoglore.engine.optim import (
    build_optimizer,
    build_scheduler,
    scaled_lr,
    set_schedule_position,
)
from videoglore.engine.run_log import RunLog
from videoglore.errors import ConfigError
from videoglore.models import load_model, model_name
from videoglore.models.flops import module_flops

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Run:
    """Everything one training process holds for a run."""

    cfg: Config
    rt: Runtime
    fast: FastPath  # autocast dtype, channels_last, compile: resolved for rt.device
    model: nn.Module  # the plain module: its state dict is what checkpoints store
    net: nn.Module  # what runs forward: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_loader: DataLoader
    val_loader: DataLoader | None
    classes: list[str]
    iters_per_epoch: int
    state: ckpt.TrainState
    log: RunLog  # writes on rank 0 only
    # what model.weights gave (models.loading.WeightsSource.record()), recorded in checkpoints
    weights_source: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.output.dir)

    def forward(self, module: nn.Module, batch: torch.Tensor | YuvClips) -> torch.Tensor:
        """Logits (B, K) of a loader batch through ``module`` (``net`` or ``model``) on this
        run's fast path (``forward.forward_batch``)."""
        return forward_batch(module, batch, self.cfg.data, self.rt.device, self.fast)


def optimization(
    model: nn.Module,
    tc: TrainConfig,
    rt: Runtime,
    fast: FastPath,
    batch: int,
    iters_per_epoch: int,
) -> dict:
    """What a step updates, as ``Run`` fields: ``model``, SGD at the lr of the global ``batch``,
    the per-iteration schedule over epochs of ``iters_per_epoch`` steps, the fp16 grad scaler
    (a no-op unless the fast path's dtype is float16)."""
    optimizer = build_optimizer(model, tc, batch)
    return dict(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, iters_per_epoch, tc),
        scaler=torch.amp.GradScaler(rt.device.type, enabled=fast.dtype == torch.float16),
    )


def build_run(cfg: Config, rt: Runtime) -> Run:
    """Build (or resume) the run of ``cfg`` in this process; call it under the run lock."""
    tc = cfg.train
    seed_everything(tc.seed, tc.deterministic)
    fast = fast_path(cfg.runtime, rt.device)
    classes = read_run_classes(cfg)
    model, weights_source = _build_model(cfg, rt, fast, classes)
    train_loader = build_loader(cfg, "train", distributed=rt.distributed, batch_size=tc.batch_size)
    batch = global_batch(cfg, rt)
    iters_per_epoch = len(train_loader)  # before any skip_first
    if iters_per_epoch == 0:
        raise ConfigError(
            f"{len(train_loader.dataset)} training videos are fewer than one global batch of "
            f"{batch}; lower train.batch_size"
        )
    modules = optimization(model, tc, rt, fast, batch, iters_per_epoch)
    state = ckpt.TrainState()
    _resume(cfg, rt, state, modules)
    optimizer, scheduler = modules["optimizer"], modules["scheduler"]
    _align_schedule(optimizer, scheduler, state, iters_per_epoch, scaled_lr(tc, batch))
    if state.iteration == 0:  # same init on every rank above; different dropout draws below
        seed_everything(tc.seed + rt.rank, tc.deterministic)
        if rt.is_main:
            _say_if_from_scratch(cfg)
    val_loader = None
    if tc.val_every > 0 and cfg.data.val_list:
        val_loader = build_loader(cfg, "val", distributed=rt.distributed, batch_size=tc.batch_size)
    run_log = RunLog(cfg.output.dir, enabled=rt.is_main)
    on_main(run_log.open, rt)
    return Run(
        cfg=cfg,
        rt=rt,
        fast=fast,
        net=_wrap(model, rt, fast),
        train_loader=train_loader,
        val_loader=val_loader,
        classes=classes,
        weights_source=weights_source,
        iters_per_epoch=iters_per_epoch,
        state=state,
        log=run_log,
        **modules,
    )


def start_summary(run: Run) -> str:
    """What a run is about to do, on one screen: the lines the trainer logs when it starts."""
    cfg, rt, tc, data = run.cfg, run.rt, run.cfg.train, run.cfg.data
    state, fast = run.state, run.fast
    start = "new run"
    if state.iteration:
        start = f"resumed at iteration {state.iteration} from {state.last_checkpoint}"
    params = sum(p.numel() for p in run.model.parameters()) / 1e6
    clip = (data.num_frames, data.crop_size, data.crop_size)
    val = len(run.val_loader.dataset) if run.val_loader is not None else 0
    batch = global_batch(cfg, rt)
    device = str(rt.device)
    if rt.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(rt.device)})"
    precision = {None: "float32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}
    lines = [
        f"run      {run.run_dir}: {start}; {tc.epochs} epochs of {run.iters_per_epoch} iterations",
        f"model    {model_name(cfg.model)} (width {cfg.model.width:g}, {len(run.classes)} "
        f"classes): {params:.2f} M parameters, {model_gflops(run.model, clip, rt.device)} per "
        f"{clip[0]}x{clip[1]}x{clip[2]} clip",
        f"data     {len(run.train_loader.dataset)} training videos, {val} validation videos; "
        f"{data.num_frames} frames every {data.frame_interval}, {data.num_workers} loader "
        f"workers per rank (1 thread each), reader {data.reader}",
        f"batch    {tc.batch_size} clips x {rt.world_size} ranks = {batch} per step; lr "
        f"{scaled_lr(tc, batch):.4g} (train.lr {tc.lr:g} at {tc.lr_batch} clips)",
        f"device   {device} x {rt.world_size}: {precision[fast.dtype]}, channels_last_3d "
        f"{_on(fast.channels_last)}, torch.compile {_on(fast.compile)}; "
        f"{torch.get_num_threads()} torch threads (runtime.threads={cfg.runtime.threads})",
    ]
    return "\n".join(lines)


_GFLOPS: dict[tuple, str] = {}  # (model config, clip) → text: one count per process


def model_gflops(model: nn.Module, clip: tuple[int, int, int], device: torch.device) -> str:
    """The "N.NN GFLOPs" of one forward of a ``clip`` (T, H, W) through ``model`` (fvcore, one
    multiply-add = one FLOP, as ``run.py flops``), or why it was not counted. One count
    costs a traced forward at batch 1 (tenths of a second on a GPU, seconds for a full-size net
    on a CPU), so the result is kept per architecture (parameter shapes) and clip."""
    key = (type(model).__name__, clip, tuple(tuple(p.shape) for p in model.parameters()))
    if key not in _GFLOPS:
        try:
            count = module_flops(model, torch.zeros(1, 3, *clip, device=device))[""]
            gflops = count / 1e9  # as the README's table for full-size nets, 3 digits for tiny ones
            _GFLOPS[key] = f"{gflops:.2f} GFLOPs" if gflops >= 1 else f"{gflops:.3g} GFLOPs"
        except Exception as exc:  # a summary line must not stop a run
            _GFLOPS[key] = f"GFLOPs not counted ({first_line(exc)})"
    return _GFLOPS[key]


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def global_batch(cfg: Config, rt: Runtime) -> int:
    """Clips per optimizer step over all ranks (the lr is scaled to it)."""
    return cfg.train.batch_size * rt.world_size


def _build_model(
    cfg: Config, rt: Runtime, fast: FastPath, classes: list[str]
) -> tuple[nn.Module, dict]:
    """The net of ``cfg.model`` with ``model.pretrained`` and ``model.weights`` loaded under the
    fine-tuning rules (``models.loading``), placed on the device; and what ``model.weights`` gave
    (``WeightsSource.record()``, {} without), which every checkpoint of the run records."""
    if cfg.model.num_classes != len(classes):
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes} but {len(classes)} classes are listed in "
            f"the class file; set model.num_classes={len(classes)}"
        )
    weights = cfg.model.weights or None
    model, source = load_model(cfg.model, weights, classes=classes, fine_tune=True)
    if cfg.train.sync_bn and rt.distributed:
        if rt.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("train.sync_bn needs CUDA; using per-process BatchNorm on CPU")
    return place_model(model, rt.device, fast), source.record() if source else {}


def _say_if_from_scratch(cfg: Config) -> None:
    """One line when a fresh run starts from random weights: the released recipes start from
    inflated ImageNet weights (``model.pretrained``), and an empty value is easy to miss."""
    if cfg.model.pretrained or cfg.model.weights:
        return
    name = model_name(cfg.model)
    base = name.removesuffix("_glore")
    released = [f"zoo:{n}" for n, e in zoo.ZOO.items() if e.kind == "pretrained" and e.net == base]
    log.info(
        "training %s from scratch (random weights): model.pretrained and model.weights are "
        "empty; the released recipe starts from ImageNet weights%s",
        name,
        f", e.g. model.pretrained={released[0]}" if released else "",
    )


def _wrap(model: nn.Module, rt: Runtime, fast: FastPath) -> nn.Module:
    net = model
    if rt.distributed:
        device_ids = [rt.device.index] if rt.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    return torch.compile(net) if fast.compile else net


def _resume(cfg: Config, rt: Runtime, state: ckpt.TrainState, modules: dict) -> None:
    """Restore the newest readable checkpoint of the run (rank 0 finds it, every rank loads it);
    ``state.best_acc`` starts at best.pt's own metric, so a restart never replaces it by a worse
    model."""
    run_dir = Path(cfg.output.dir)
    found = None

    def find() -> tuple[str, float]:
        nonlocal found
        found = ckpt.load_latest(run_dir, cfg.train.start_over_if_unreadable)
        return (str(found[1]) if found else ""), ckpt.best_bar(run_dir)

    path, state.best_acc = on_main(find, rt)
    if not path:
        return
    saved = found[0] if rt.is_main else ckpt.load_checkpoint(path)
    ckpt.restore(saved, path, state, rank=rt.rank, seed=cfg.train.seed, **modules)
    log.info("resumed from %s (epoch %d, iteration %d)", path, state.epoch, state.iteration)
    changed = _changed_settings(saved.get("config") or {}, config_to_dict(cfg))
    if changed and rt.is_main:
        log.warning(
            "%s: the run goes on with settings that differ from the checkpoint's: %s",
            path,
            ", ".join(changed),
        )


def _changed_settings(saved: dict, now: dict) -> list[str]:
    """``section.key before → now`` for each training setting a resumed run changes (the
    resume accepts them: more epochs, another batch size; a changed clip is worth a word)."""
    changed = []
    for section in ("data", "model", "train", "test"):
        before, after = saved.get(section) or {}, now.get(section) or {}
        for key in sorted(before.keys() & after.keys()):
            if before[key] != after[key]:
                was, is_now = bounded_repr(before[key], 80), bounded_repr(after[key], 80)
                changed.append(f"{section}.{key} {was} → {is_now}")
    return changed


def _align_schedule(optimizer, scheduler, state, iters_per_epoch: int, base_lr: float) -> None:
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


def read_run_classes(cfg: Config) -> list[str]:
    """The class names of the run: ``data.classes``, else classes.json beside the train list."""
    if cfg.data.classes:
        return read_classes(cfg.data.classes)
    if not cfg.data.train_list:
        raise ConfigError("data.train_list is empty; point it at a prepared train.csv")
    return read_classes(Path(cfg.data.train_list).parent / "classes.json")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
