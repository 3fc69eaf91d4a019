"""Precise BN as released (``train.precise_bn``): which parameters the update stage trains, at
which rates; running statistics after the forward-only stage against an independent
recomputation; consistency across two DDP ranks; the trainer's order (checkpoint after precise
BN) through exact resume."""

import copy
import dataclasses
import functools
import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from tests.helpers import REPO, tiny_config
from videoglore.config import Config, ModelConfig, TrainConfig, load_config
from videoglore.engine import checkpoint as ckpt
from videoglore.engine import forward as forward_module
from videoglore.engine.distributed import Runtime
from videoglore.engine.forward import FastPath, forward_batch
from videoglore.engine.optim import build_optimizer, build_scheduler, lrs_at
from videoglore.engine.precise_bn import (
    batch_key,
    forward_stage,
    run_precise_bn,
    stage_lengths,
    updated_parameter_names,
)
from videoglore.engine.run import Run
from videoglore.engine.run_log import RunLog, read_log
from videoglore.engine.trainer import train
from videoglore.errors import ConfigError, TrainingError
from videoglore.models import build_model

CPU = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
FP32 = FastPath(dtype=None, channels_last=False, compile=False)


def r50_glore(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(depth=50, glore=True, width=1 / 16, num_classes=3))
    model.apply(_unzero_blockers)
    return model


def _unzero_blockers(module: nn.Module) -> None:
    # released init zeroes the GloRe output BN weight; give the units some effect in the tests
    if isinstance(module, nn.BatchNorm3d):
        with torch.no_grad():
            module.weight.uniform_(0.5, 1.5)


def config(steps: int, update: str, **train) -> Config:
    cfg = Config()
    cfg.train = dataclasses.replace(
        TrainConfig(),
        precise_bn=steps,
        precise_bn_update=update,
        lr=0.1,
        lr_batch=2,
        warmup_epochs=1.0,
        lr_mult={"*conv_m2*": 0.5},
        **train,
    )
    return cfg


def make_run(
    model: nn.Module, cfg: Config, rt: Runtime = CPU, net: nn.Module | None = None, batch: int = 2
) -> Run:
    """A ``Run`` holding what precise BN uses (no loaders: the tests feed the batches)."""
    optimizer = build_optimizer(model, cfg.train, global_batch=batch * rt.world_size)
    return Run(
        cfg=cfg,
        rt=rt,
        fast=FP32,
        model=model,
        net=model if net is None else net,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, iters_per_epoch=10, cfg=cfg.train),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        train_loader=None,
        val_loader=None,
        classes=[],
        iters_per_epoch=10,
        state=ckpt.TrainState(),
        log=RunLog("", enabled=False),
    )


def fp32_forward(cfg: Config, rt: Runtime = CPU):
    return functools.partial(forward_batch, data=cfg.data, device=rt.device, fast=FP32)


def clips(n: int, seed: int, batch: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(0, 256, (batch, 3, 8, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 3, (batch,), generator=g),
        )
        for _ in range(n)
    ]


def released_names(model: nn.Module) -> set[str]:
    """The released groups named "precise.bn" (train_model.py): neither '.bias' nor 'bn.weight'."""
    return {
        n
        for n, _ in model.named_parameters()
        if not (n.endswith(".bias") or n.endswith("bn.weight"))
    }


def norm_names(model: nn.Module) -> set[str]:
    return {
        f"{m}.{p}"
        for m, module in model.named_modules()
        if isinstance(module, nn.BatchNorm3d | nn.BatchNorm1d)
        for p, _ in module.named_parameters(recurse=False)
    }


def test_stage_lengths_split_as_released():
    assert stage_lengths(500, "released") == (400, 100)  # train/model.py: round(0.2 * 500)
    assert stage_lengths(12, "norm") == (10, 2)
    assert stage_lengths(12, "none") == (0, 12)


def test_precise_bn_settings_are_checked_when_the_config_loads():
    assert load_config(None).train.precise_bn == 0  # off unless a config asks for it
    with pytest.raises(ConfigError, match="train.precise_bn must be >= 0, got -1"):
        load_config(None, ["train.precise_bn=-1"])
    with pytest.raises(ConfigError, match="train.precise_bn_update must be one of .*did you mean"):
        load_config(None, ["train.precise_bn_update=nrom"])
    with pytest.raises(ConfigError, match="train.precise_bn_average must be one of .*did you mean"):
        load_config(None, ["train.precise_bn_average=exct"])


def test_updated_parameter_sets():
    model = r50_glore()
    released = updated_parameter_names(model, "released")
    assert released == released_names(model)
    assert "conv3.B01_extra.blocker.weight" in released  # not named *bn.weight
    assert "classifier.weight" in released and "conv1.conv.weight" in released
    assert "conv1.bn.weight" not in released and "classifier.bias" not in released
    assert updated_parameter_names(model, "norm") == norm_names(model)
    assert updated_parameter_names(model, "none") == set()


@pytest.mark.parametrize("update", ["released", "norm"])
def test_update_stage_trains_only_its_parameters_at_the_last_rate(update):
    model = r50_glore()
    cfg = config(5, update)  # 4 update steps, 1 forward-only
    run = make_run(model, cfg)
    opt, sched = run.optimizer, run.scheduler
    for _ in range(3):  # inside the warmup: the rate changes every step
        opt.step()
        sched.step()
    run.state.iteration = 3
    rates_before = [g["lr"] for g in opt.param_groups]
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append([g["lr"] for g in o.param_groups]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits = []
    model.register_forward_hook(lambda m, args, out: logits.append(out.detach()))
    batches = clips(5, 1)
    result = run_precise_bn(run, batches)
    # the reported loss is the mean cross-entropy of the 4 update steps' logits
    losses = [F.cross_entropy(x, y) for x, (_, y) in zip(logits[:4], batches[:4], strict=True)]
    want = float(sum(losses)) / 4
    assert len(logits) == 5 and result["precise_bn_loss"] == pytest.approx(want, rel=1e-6)
    trained = released_names(model) if update == "released" else norm_names(model)
    for name, param in model.named_parameters():
        if name not in trained:
            assert torch.equal(param, before[name]), f"{name} changed"
    changed = [n for n in trained if not torch.equal(model.get_parameter(n), before[n])]
    assert len(changed) >= 0.9 * len(trained)
    # every update used the rate of the last training step (iteration 3), × each group's factor
    assert seen == [lrs_at(opt, sched, 2)] * 4
    assert seen[0] != rates_before
    assert [g["lr"] for g in opt.param_groups] == rates_before  # restored


def test_out_of_memory_in_the_update_stage_becomes_advice(monkeypatch):
    def no_memory(batch, data, device=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(forward_module, "model_input", no_memory)
    run = make_run(r50_glore(), config(5, "released"))
    run.state.iteration = 7
    advice = "out of GPU memory during precise BN after iteration 7.*batch_size"
    with pytest.raises(TrainingError, match=advice):
        run_precise_bn(run, clips(5, 1))


def reference_running_stats(
    model: nn.Module, batches, cfg: Config, exact: bool = False
) -> dict[str, torch.Tensor]:
    """Running mean/var after forward passes in train mode, recomputed by hand: every BN's input
    is recorded (its own buffers frozen by momentum 0) and the moving averages (or, ``exact``,
    the plain means over the batches) are computed here."""
    from videoglore.data import normalize

    model = copy.deepcopy(model).train()
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    stats = {
        n: (m.running_mean.clone().double(), m.running_var.clone().double()) for n, m in bns.items()
    }
    momentum = {n: m.momentum for n, m in bns.items()}
    inputs: dict[str, torch.Tensor] = {}
    for name, bn in bns.items():
        bn.momentum = 0.0
        bn.register_forward_pre_hook(lambda mod, args, name=name: inputs.__setitem__(name, args[0]))
    seen: dict[str, list] = {name: [] for name in bns}
    with torch.no_grad():
        for batch, _ in batches:
            model(normalize(batch, cfg.data.normalization))
            for name, x in inputs.items():
                dims = [d for d in range(x.dim()) if d != 1]  # all but channels
                mean = x.double().mean(dim=dims)
                var = x.double().var(dim=dims, unbiased=True)
                seen[name].append(torch.stack([mean, var]))
                m = momentum[name]
                old_mean, old_var = stats[name]
                stats[name] = ((1 - m) * old_mean + m * mean, (1 - m) * old_var + m * var)
    if exact:
        return {n: torch.stack(s).mean(dim=0) for n, s in seen.items()}
    return {n: torch.stack(s) for n, s in stats.items()}


def running_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: torch.stack([m.running_mean.double(), m.running_var.double()])
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }


@pytest.mark.parametrize("average", ["ema", "exact"])
def test_forward_stage_gives_the_recomputed_statistics(average):
    model, cfg, batches = r50_glore(), config(6, "none", precise_bn_average=average), clips(6, 2)
    model.train()(torch.randn(2, 3, 8, 32, 32))  # running statistics that are not the defaults
    want = reference_running_stats(model, batches, cfg, exact=average == "exact")
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert run_precise_bn(make_run(model, cfg), batches) == {}  # no update stage, no loss
    got = running_stats(model)
    assert got.keys() == want.keys() and len(got) > 50
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=_named(name))
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert not torch.equal(got["tail.bn"], running_stats(r50_glore())["tail.bn"])  # they moved
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm3d))


def _ddp_worker(rank: int, store: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2
    )
    torch.set_num_threads(1)
    rt = Runtime(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    # 1) update stage through DDP: weights stay equal on both ranks
    model = r50_glore()
    cfg = config(5, "released")
    run = make_run(model, cfg, rt, net=nn.parallel.DistributedDataParallel(model))
    run.state.iteration = 4
    run_precise_bn(run, clips(5, 10 + rank))
    # 2) forward-only stage on each rank's own batches, statistics averaged
    plain = r50_glore()
    forward_stage(plain, iter(clips(4, 20 + rank)), 4, fp32_forward(cfg, rt), rt)
    torch.save(
        {"trained": model.state_dict(), "forward": running_stats(plain)}, f"{out}/rank{rank}.pt"
    )
    torch.distributed.destroy_process_group()


def test_two_ddp_ranks_end_with_the_same_weights_and_statistics(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in ranks[0]["trained"].items():
        if key.endswith(("running_mean", "running_var")):
            continue  # the released update stage leaves them per rank; the forward stage syncs
        assert torch.equal(value, ranks[1]["trained"][key]), key
    start = r50_glore()
    assert not torch.equal(ranks[0]["trained"]["classifier.weight"], start.classifier.weight)
    cfg = config(4, "none")
    per_rank = [reference_running_stats(start, clips(4, 20 + r), cfg) for r in (0, 1)]
    for name, got0 in ranks[0]["forward"].items():
        assert torch.equal(got0, ranks[1]["forward"][name]), name  # identical on both ranks
        want = (per_rank[0][name] + per_rank[1][name]) / 2  # the mean of the ranks' averages
        torch.testing.assert_close(got0, want, rtol=1e-4, atol=1e-5, msg=_named(name))


def test_batch_keys_are_not_training_epochs():
    assert batch_key(3, 0) != batch_key(3, 1) != 3
    assert batch_key(3, 0) > 10_000


def test_trainer_runs_precise_bn_before_the_checkpoint_and_resumes_exactly(
    tiny_videos, tmp_path, caplog
):
    extra = {"epochs": 2, "ckpt_every_iters": 3, "keep_last": 10, "precise_bn": 3}
    result = train(tiny_config(tiny_videos, tmp_path / "straight", train=extra))
    epochs = [r for r in read_log(tmp_path / "straight" / "log.jsonl") if r["kind"] == "epoch"]
    losses = [r["precise_bn_loss"] for r in epochs]  # 3 steps: 2 update, 1 forward-only
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert result["precise_bn_loss"] == losses[-1]
    straight = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "epoch_0002.pt")
    plain = tiny_config(tiny_videos, tmp_path / "plain", train={**extra, "precise_bn": 0})
    train(plain)
    without = ckpt.load_checkpoint(tmp_path / "plain" / "checkpoints" / "epoch_0002.pt")
    assert not torch.equal(
        straight["model"]["tail.bn.running_var"], without["model"]["tail.bn.running_var"]
    )

    run = tmp_path / "stopped"
    cfg = tiny_config(tiny_videos, run, train=extra)
    train(cfg)
    folder = run / "checkpoints"
    caplog.set_level("INFO", logger="videoglore")
    # resume from the mid-epoch checkpoint of epoch 2 (iteration 6), then from the end of epoch 1
    scenarios = [
        (["epoch_0002.pt", "best.pt"], "epoch_0001_iter_00000006.pt"),
        (["epoch_0002.pt", "epoch_0001_iter_00000006.pt"], "epoch_0001.pt"),
    ]
    for gone, expect in scenarios:
        for name in gone:
            (folder / name).unlink(missing_ok=True)
        train(cfg)
        assert caplog.records and f"resumed from {folder / expect}" in caplog.text
        caplog.clear()
        resumed = ckpt.load_checkpoint(folder / "epoch_0002.pt")
        for key, value in straight["model"].items():
            assert torch.equal(value, resumed["model"][key]), f"{key} after removing {gone}"


@pytest.mark.parametrize("name", ["k400_r50_glore_8x8.yaml", "k400_r101_glore_8x8.yaml"])
def test_k400_configs_turn_released_precise_bn_on(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.train.precise_bn > 0 and cfg.train.precise_bn_update == "released"
    assert cfg.train.precise_bn_average == "ema"


def test_forward_only_precise_bn_changes_nothing_but_the_statistics(tiny_videos, tmp_path):
    extra = {"epochs": 2, "val_every": 0}
    runs = {}
    for steps in (0, 3):
        cfg = tiny_config(
            tiny_videos,
            tmp_path / str(steps),
            model={"dropout": 0.5},  # draws random numbers in every train-mode forward
            train={**extra, "precise_bn": steps, "precise_bn_update": "none"},
        )
        train(cfg)
        runs[steps] = ckpt.load_checkpoint(tmp_path / str(steps) / "checkpoints" / "epoch_0002.pt")
    stats = ("running_mean", "running_var", "num_batches_tracked")
    for key, value in runs[0]["model"].items():
        if not key.endswith(stats):
            assert torch.equal(value, runs[3]["model"][key]), key
    assert not torch.equal(
        runs[0]["model"]["tail.bn.running_var"], runs[3]["model"]["tail.bn.running_var"]
    )


@pytest.mark.parametrize("steps", [4, 20])
def test_glore_from_scratch_validates_with_sane_losses(tiny_videos, tmp_path, steps):
    # Without precise BN this run validates at NaN in all 3 epochs: the BN statistics of a few
    # batches of 2 clips lag the weights, and the GloRe units are cubic in their input.
    cfg = tiny_config(
        tiny_videos,
        tmp_path / "run",
        model={"glore": True},
        train={
            "epochs": 3,
            "precise_bn": steps,
            "precise_bn_update": "none",
            # few steps need the exact mean: a moving average keeps 0.9^steps of the old values
            "precise_bn_average": "exact" if steps < 10 else "ema",
        },
    )
    train(cfg)
    losses = [
        r["val_loss"] for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "epoch"
    ]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses), losses


def _named(name: str):
    return lambda message: f"{name}: {message}"
