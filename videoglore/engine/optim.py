"""Optimizer and per-iteration learning-rate schedule (the released GloRe Kinetics recipe).

Recipe (facebookresearch/GloRe ``train_model.py`` and ``train/lr_scheduler.py``): SGD with
momentum 0.9 and Nesterov, weight decay 1e-4 on everything except biases, a linear warmup that
starts at lr/10 and multiplies into a step schedule (factor 0.1 at fixed points), updated every
iteration. We express the schedule in epochs so that it does not depend on the batch size, and
scale the learning rate linearly with the global batch (lr × global_batch / lr_batch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from videoglore.config import TrainConfig
from videoglore.errors import ConfigError

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def scaled_lr(cfg: TrainConfig, global_batch: int) -> float:
    """Linear scaling rule: ``cfg.lr`` belongs to ``cfg.lr_batch`` clips per step."""
    return cfg.lr * global_batch / cfg.lr_batch


def param_groups(model: nn.Module, weight_decay: float, decay_norm: bool) -> list[dict]:
    """Split parameters into a decayed and a non-decayed group.

    Biases never get weight decay (as in the released code); norm-layer weights get it unless
    ``decay_norm`` is False.
    """
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or (not decay_norm and isinstance(module, NORM_LAYERS)):
                no_decay.add(id(param))
    decay, plain = [], []
    for param in model.parameters():
        if param.requires_grad:
            (plain if id(param) in no_decay else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig, global_batch: int) -> torch.optim.SGD:
    """SGD (momentum, Nesterov) at the batch-scaled learning rate."""
    groups = param_groups(model, cfg.weight_decay, cfg.weight_decay_norm)
    return torch.optim.SGD(
        groups, lr=scaled_lr(cfg, global_batch), momentum=cfg.momentum, nesterov=cfg.nesterov
    )


def lr_multiplier(iteration: int, iters_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at ``iteration`` (0-based): warmup × (step or cosine) decay."""
    epoch = iteration / max(1, iters_per_epoch)
    if cfg.schedule == "step":
        decay = cfg.lr_factor ** sum(1 for step in cfg.lr_steps if epoch >= step)
    elif cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(1.0, epoch / max(cfg.epochs, 1e-8))))
    else:
        raise ConfigError(f"train.schedule must be 'step' or 'cosine', got {cfg.schedule!r}")
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        start = cfg.warmup_factor
        decay *= start + (1.0 - start) * epoch / cfg.warmup_epochs
    return decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, iters_per_epoch: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule: call ``scheduler.step()`` after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_multiplier(it, iters_per_epoch, cfg)
    )


def set_schedule_position(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    iteration: int,
    base_lr: float,
) -> None:
    """Put a ``build_scheduler`` schedule at ``iteration`` with peak lr ``base_lr`` (resume)."""
    scheduler.base_lrs = [base_lr] * len(optimizer.param_groups)
    scheduler.last_epoch = iteration
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * factor(iteration)
