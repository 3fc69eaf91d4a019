"""Layer-wise learning rates of the released recipe (``train.lr_mult``): group membership, weight
decay, and the effective learning rate of named parameters along the schedule and after resume.

Released rule (facebookresearch/GloRe ``train_model.py``): from inflated ImageNet weights, every
parameter whose name contains ``conv_m2`` learns at half the rate; fine-tuning halves all but the
classifier; no weight decay on biases, weight decay on BatchNorm weights.
"""

import dataclasses

import pytest
import torch

from tests.helpers import REPO
from videoglore.config import ModelConfig, TrainConfig, load_config
from videoglore.engine.optim import (
    build_optimizer,
    build_scheduler,
    set_schedule_position,
)
from videoglore.errors import ConfigError
from videoglore.models import build_model

RELEASED = {"*conv_m2*": 0.5}
FINE_TUNE = {"classifier.*": 1.0, "*": 0.5}


def r50_glore():
    return build_model(ModelConfig(depth=50, glore=True, width=1 / 16, num_classes=5))


def recipe(**changes) -> TrainConfig:
    base = TrainConfig(
        lr=0.04,
        lr_batch=8,
        weight_decay=1e-4,
        warmup_epochs=1.0,
        warmup_factor=0.1,
        schedule="step",
        lr_steps=[2.0],
        lr_factor=0.1,
        lr_mult=dict(RELEASED),
    )
    return dataclasses.replace(base, **changes)


def group_of(optimizer, model) -> dict[str, dict]:
    """Parameter name → its optimizer group."""
    by_id = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


def released_mult(name: str, fine_tune: bool) -> float:
    if fine_tune:
        return 1.0 if name.startswith("classifier") else 0.5
    return 0.5 if "conv_m2" in name else 1.0


@pytest.mark.parametrize("fine_tune", [False, True])
def test_groups_follow_the_released_rule(fine_tune):
    model = r50_glore()
    opt = build_optimizer(model, recipe(lr_mult=FINE_TUNE if fine_tune else RELEASED), 8)
    groups = group_of(opt, model)
    assert len(groups) == len(list(model.parameters()))  # every parameter, once
    for name, group in groups.items():
        assert group["lr_mult"] == released_mult(name, fine_tune), name
        assert group["weight_decay"] == (0.0 if name.endswith(".bias") else 1e-4), name
        assert group["lr"] == pytest.approx(0.04 * group["lr_mult"]), name  # before the schedule
    # both kinds present, BN weights keep their weight decay
    assert groups["conv2.B01.conv_m2.bn.weight"]["lr_mult"] == (0.5)
    assert groups["conv2.B01.conv_m2.bn.weight"]["weight_decay"] == 1e-4
    assert groups["conv3.B01_extra.blocker.weight"]["weight_decay"] == 1e-4
    assert groups["conv3.B01_extra.gcn.conv1.bias"]["weight_decay"] == 0.0
    # the first group carries the base rate (what the trainer logs as "lr")
    assert opt.param_groups[0]["lr_mult"] == 1.0


def test_without_rules_the_groups_are_unchanged():
    model = r50_glore()
    opt = build_optimizer(model, recipe(lr_mult={}), 8)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert [g["lr_mult"] for g in opt.param_groups] == [1.0, 1.0]


def _lrs(opt, model, names):
    groups = group_of(opt, model)
    return [groups[n]["lr"] for n in names]


NAMED = ["conv2.B01.conv_m2.conv.weight", "conv2.B01.conv_m1.conv.weight", "classifier.bias"]


def test_schedule_multiplies_the_factors():
    model = r50_glore()
    cfg = recipe()
    opt = build_optimizer(model, cfg, global_batch=16)  # lr 0.04 × 16 / 8 = 0.08
    sched = build_scheduler(opt, iters_per_epoch=4, cfg=cfg)
    seen = {}
    for it in range(9):
        seen[it] = _lrs(opt, model, NAMED)
        opt.step()
        sched.step()
    base = [0.08 * 0.5, 0.08, 0.08]
    assert seen[0] == pytest.approx([b * 0.1 for b in base])  # warmup starts at lr / 10
    assert seen[2] == pytest.approx([b * (0.1 + 0.9 * 2 / 4) for b in base])  # halfway
    assert seen[4] == pytest.approx(base)  # warmup over (1 epoch = 4 iterations)
    assert seen[7] == pytest.approx(base)
    assert seen[8] == pytest.approx([b * 0.1 for b in base])  # after the step at epoch 2


@pytest.mark.parametrize("load_state", [True, False])
def test_resume_restores_every_group_exactly(load_state):
    cfg = recipe()
    model = r50_glore()
    opt = build_optimizer(model, cfg, 16)
    sched = build_scheduler(opt, 4, cfg)
    for _ in range(6):
        opt.step()
        sched.step()
    want = [g["lr"] for g in opt.param_groups]

    model2 = r50_glore()
    opt2 = build_optimizer(model2, cfg, 16)
    sched2 = build_scheduler(opt2, 4, cfg)
    if load_state:
        opt2.load_state_dict(opt.state_dict())
        sched2.load_state_dict(sched.state_dict())
    set_schedule_position(opt2, sched2, 6, base_lr=0.08)
    assert [g["lr"] for g in opt2.param_groups] == want
    assert [g["initial_lr"] for g in opt2.param_groups] == [
        0.08 * g["lr_mult"] for g in opt2.param_groups
    ]
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match=r"train.lr_mult: pattern '\*conv_m9\*' matches no"):
        build_optimizer(r50_glore(), recipe(lr_mult={"*conv_m9*": 0.5}), 8)


def test_lr_mult_is_a_checked_mapping():
    cfg = load_config(None, ["train.lr_mult={'*conv_m2*': 0.5, 'classifier.*': 2}"])
    assert cfg.train.lr_mult == {"*conv_m2*": 0.5, "classifier.*": 2.0}  # order kept
    assert list(cfg.train.lr_mult) == ["*conv_m2*", "classifier.*"]
    with pytest.raises(ConfigError, match=r"train.lr_mult.\*conv_m2\* must be float"):
        load_config(None, ["train.lr_mult={'*conv_m2*': fast}"])
    with pytest.raises(ConfigError, match="train.lr_mult must be a mapping"):
        load_config(None, ["train.lr_mult=[0.5]"])
    with pytest.raises(ConfigError, match=r"train.lr_mult.\*conv_m2\* must be >= 0, got -1.0"):
        load_config(None, ["train.lr_mult={'*conv_m2*': -1}"])


@pytest.mark.parametrize("name", ["k400_r50_glore_8x8.yaml", "k400_r101_glore_8x8.yaml"])
def test_k400_configs_use_the_released_rule(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.train.lr_mult == RELEASED
    assert cfg.train.weight_decay_norm and cfg.train.weight_decay == 1e-4


def test_mfnet_config_has_no_layer_factors():
    # the MF-Net recipe (cypw/PyTorch-MFNet train_model.py) trains every layer at one rate
    assert load_config(REPO / "configs" / "k400_mfnet_glore_16x8.yaml").train.lr_mult == {}


def test_effective_lr_of_a_named_parameter_moves_it_by_that_much():
    # one plain SGD step (no momentum, no decay): the update is lr × grad, per group
    model = r50_glore()
    cfg = recipe(momentum=0.0, nesterov=False, weight_decay=0.0, warmup_epochs=0.0)
    opt = build_optimizer(model, cfg, 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    for name, p in model.named_parameters():
        moved = (before[name] - p.detach()).flatten()[0].item()
        assert moved == pytest.approx(0.04 * released_mult(name, False)), name
