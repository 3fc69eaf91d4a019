"""Optimizer and per-iteration learning-rate schedule (the released GloRe Kinetics recipe).

Recipe (facebookresearch/GloRe ``train_model.py`` and ``train/lr_scheduler.py``): SGD with
momentum 0.9 and Nesterov, weight decay 1e-4 on everything except biases, a linear warmup that
starts at lr/10 and multiplies into a step schedule (factor 0.1 at fixed points), updated every
iteration. We express the schedule in epochs so that it does not depend on the batch size, and
scale the learning rate linearly with the global batch (lr × global_batch / lr_batch).

Layer-wise rates (``train.lr_mult``, released ``train_model.py``: ``lr_mult`` 0.5 on the
ImageNet-inflated ``conv_m2`` layers, or on all but the classifier when fine-tuning): each
parameter group carries its factor, its peak rate is ``scaled_lr × lr_mult`` and the schedule
multiplies that, as the released ``adjust_learning_rate`` does (lr × group lr_mult)::

    group lr at iteration i = scaled_lr × lr_mult(group) × lr_multiplier(i)
"""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from videoglore.config import TrainConfig
from videoglore.errors import ConfigError

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def scaled_lr(cfg: TrainConfig, global_batch: int) -> float:
    """Linear scaling rule: ``cfg.lr`` belongs to ``cfg.lr_batch`` clips per step."""
    return cfg.lr * global_batch / cfg.lr_batch


def lr_factor_of(name: str, rules: dict[str, float]) -> float:
    """The factor of the first glob pattern in ``rules`` that matches ``name`` (else 1)."""
    for pattern, factor in rules.items():
        if fnmatch.fnmatchcase(name, pattern):
            return factor
    return 1.0


def param_groups(model: nn.Module, cfg: TrainConfig, base_lr: float) -> list[dict]:
    """Parameter groups by (lr factor, weight decay or not), each with ``lr_mult`` and its lr.

    Biases never get weight decay (as in the released code); norm-layer weights get it unless
    ``cfg.weight_decay_norm`` is False. Groups with factor 1 come first, decayed before plain, so
    ``param_groups[0]`` carries the base rate and a run without ``lr_mult`` keeps the two groups
    (decayed, plain) of earlier checkpoints.
    """
    _check_rules(model, cfg.lr_mult)
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or (not cfg.weight_decay_norm and isinstance(module, NORM_LAYERS)):
                no_decay.add(id(param))
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (lr_factor_of(name, cfg.lr_mult), id(param) not in no_decay)
            buckets.setdefault(key, []).append(param)
    order = sorted(buckets, key=lambda k: (k[0] != 1.0, not k[1]))  # stable: else first seen
    return [
        {
            "params": buckets[mult, decay],
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr_mult": mult,
            "lr": base_lr * mult,
        }
        for mult, decay in order
    ]


def _check_rules(model: nn.Module, rules: dict[str, float]) -> None:
    names = [name for name, _ in model.named_parameters()]
    for pattern in rules:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise ConfigError(
                f"train.lr_mult: pattern {pattern!r} matches no parameter of this model (names "
                f"look like {names[0]!r}, {names[-1]!r}); fix or remove it"
            )


def build_optimizer(model: nn.Module, cfg: TrainConfig, global_batch: int) -> torch.optim.SGD:
    """SGD (momentum, Nesterov) at the batch-scaled learning rate × each group's ``lr_mult``."""
    base_lr = scaled_lr(cfg, global_batch)
    groups = param_groups(model, cfg, base_lr)
    return torch.optim.SGD(groups, lr=base_lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_multiplier(iteration: int, iters_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at ``iteration`` (0-based): warmup × (step or cosine) decay."""
    epoch = iteration / max(1, iters_per_epoch)
    if cfg.schedule == "step":
        decay = cfg.lr_factor ** sum(1 for step in cfg.lr_steps if epoch >= step)
    else:  # cosine
        decay = 0.5 * (1.0 + math.cos(math.pi * min(1.0, epoch / max(cfg.epochs, 1e-8))))
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
    """Put a ``build_scheduler`` schedule at ``iteration`` with peak lr ``base_lr`` (resume).

    Each group's peak is ``base_lr × lr_mult`` (factor 1 for groups saved without one).
    """
    peaks = [base_lr * group.get("lr_mult", 1.0) for group in optimizer.param_groups]
    scheduler.base_lrs = list(peaks)
    scheduler.last_epoch = iteration
    for group, peak, factor in zip(
        optimizer.param_groups, peaks, scheduler.lr_lambdas, strict=True
    ):
        group["initial_lr"] = peak
        group["lr"] = peak * factor(iteration)


def lrs_at(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, iteration: int
) -> list[float]:
    """Each group's learning rate at ``iteration`` of a ``build_scheduler`` schedule."""
    return [
        group["initial_lr"] * factor(iteration)
        for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True)
    ]
