"""Trainer: recipe pieces by hand, a short run lowers the loss and writes every run file, errors."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import REPO, non_finite_in_eval, tiny_config
from videoglore.config import TrainConfig, load_config
from videoglore.data import build_dataset, build_loader, normalize
from videoglore.engine import checkpoint as ckpt
from videoglore.engine import forward as forward_module
from videoglore.engine import meter as meter_module
from videoglore.engine import trainer as trainer_module
from videoglore.engine.distributed import Runtime
from videoglore.engine.forward import FastPath
from videoglore.engine.meter import StepMeter
from videoglore.engine.optim import build_optimizer, lr_multiplier, scaled_lr
from videoglore.engine.precise_bn import statistics_problem
from videoglore.engine.run_log import read_log
from videoglore.engine.trainer import evaluate, train
from videoglore.errors import TrainingError
from videoglore.models import build_model


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 2)


def test_optimizer_no_decay_on_biases_and_optionally_norms():
    net = _Net()
    opt = build_optimizer(net, TrainConfig(lr=0.04, lr_batch=512), global_batch=64)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.04 * 64 / 512)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert decayed == {id(net.conv.weight), id(net.bn.weight), id(net.fc.weight)}
    opt = build_optimizer(net, TrainConfig(weight_decay_norm=False), global_batch=8)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {
        id(net.conv.weight),
        id(net.fc.weight),
    }
    assert scaled_lr(TrainConfig(lr=0.1, lr_batch=256), 512) == pytest.approx(0.2)


def test_lr_schedule_warmup_then_steps_and_cosine():
    cfg = TrainConfig(warmup_epochs=2.0, warmup_factor=0.1, lr_steps=[4.0, 6.0], lr_factor=0.1)
    ipe = 10  # iterations per epoch
    assert lr_multiplier(0, ipe, cfg) == pytest.approx(0.1)  # starts at lr/10 (official)
    assert lr_multiplier(10, ipe, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert lr_multiplier(20, ipe, cfg) == pytest.approx(1.0)
    assert lr_multiplier(39, ipe, cfg) == pytest.approx(1.0)
    assert lr_multiplier(40, ipe, cfg) == pytest.approx(0.1)
    assert lr_multiplier(60, ipe, cfg) == pytest.approx(0.01)
    cos = TrainConfig(schedule="cosine", epochs=10, warmup_epochs=0.0)
    assert lr_multiplier(0, ipe, cos) == pytest.approx(1.0)
    assert lr_multiplier(50, ipe, cos) == pytest.approx(0.5)
    assert lr_multiplier(100, ipe, cos) == pytest.approx(0.0, abs=1e-12)


def test_official_recipe_defaults_in_the_k400_configs():
    for name in ("k400_r50_glore_8x8", "k400_r101_glore_8x8", "k400_mfnet_glore_16x8"):
        cfg = load_config(REPO / f"configs/{name}.yaml")
        assert cfg.train.nesterov and cfg.train.momentum == 0.9 and cfg.train.weight_decay == 1e-4
        assert cfg.test.num_clips == 10 and cfg.test.num_crops == 3
    r50 = load_config(REPO / "configs/k400_r50_glore_8x8.yaml")
    assert (r50.train.lr, r50.train.lr_batch, r50.train.lr_steps) == (0.04, 512, [45, 65, 85])
    assert (r50.data.num_frames, r50.data.frame_interval, r50.model.depth) == (8, 8, 50)
    assert load_config(REPO / "configs/k400_mfnet_glore_16x8.yaml").data.num_frames == 16


def test_training_lowers_loss_and_writes_run_files(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 5, "keep_last": 2})
    result = train(cfg)
    assert result["rank"] == 0 and result["epoch"] == 5 and result["iteration"] == 20
    records = read_log(tmp_path / "run" / "log.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5]
    assert epochs[-1]["train_loss"] < 0.5 * epochs[0]["train_loss"]
    # the logged validation is the centre clip of every val video through the epoch's model
    final = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0005.pt")
    model = build_model(cfg.model)
    model.load_state_dict(final["model"])
    model.eval()
    hits, losses = [], []
    for clip, label, _ in build_dataset(cfg, "val"):  # (3, T, S, S) centre clip and crop
        with torch.no_grad():
            logits = model(normalize(clip[None], cfg.data.normalization))[0]
        hits.append(int(logits.argmax()) == label)
        losses.append(float(F.cross_entropy(logits, torch.tensor(label))))
    assert len(hits) == 4
    assert epochs[-1]["val_top1"] == pytest.approx(sum(hits) / 4)
    assert epochs[-1]["val_loss"] == pytest.approx(sum(losses) / 4, rel=1e-4)
    # best.pt is the first epoch with the highest val top-1
    best_epoch = max(epochs, key=lambda r: (r["val_top1"], -r["epoch"]))
    best = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (best["epoch"], best["best_acc"]) == (best_epoch["epoch"], best_epoch["val_top1"])
    steps = [r for r in records if r["kind"] == "train_step"]
    assert [r["step"] for r in steps] == list(range(1, 21))
    assert all(r["lr"] == pytest.approx(0.02) and r["clips_per_s"] > 0 for r in steps)
    run = tmp_path / "run"
    for name in ("config.yaml", "curves.png", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    # keep_last=2: only the two newest epoch checkpoints remain besides best.pt
    assert [p.name for p in ckpt.training_checkpoints(run)] == ["epoch_0004.pt", "epoch_0005.pt"]
    state = ckpt.load_checkpoint(run / "checkpoints" / "epoch_0005.pt")
    assert state["epoch"] == 5 and state["iteration"] == 20
    assert state["classes"] == ["class_0", "class_1"]
    assert state["config"]["model"]["width"] == 0.0625
    assert not any(k.startswith("module.") for k in state["model"])
    for key in ("optimizer", "scheduler", "scaler", "rng", "best_acc"):
        assert key in state
    # a finished run is not trained again
    again = train(cfg)
    assert again["iteration"] == 20
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["kind"] == "start"


def test_nan_loss_stops_naming_the_iteration(tiny_videos, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = forward_module.model_input

    def poisoned(batch, data, device=None):
        calls["n"] += 1
        out = real(batch, data, device)
        return out * math.nan if calls["n"] == 3 else out

    monkeypatch.setattr(forward_module, "model_input", poisoned)
    cfg = tiny_config(tiny_videos, tmp_path / "run", train={"ckpt_every_iters": 2})
    with pytest.raises(TrainingError, match=r"loss is nan at iteration 3 \(epoch 1\)") as info:
        train(cfg)
    assert "epoch_0000_iter_00000002.pt" in str(info.value)
    kept = ckpt.training_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["epoch_0000_iter_00000002.pt"]
    assert ckpt.load_checkpoint(kept[0])["iteration"] == 2


def test_out_of_memory_becomes_advice(tiny_videos, tmp_path, monkeypatch):
    def no_memory(batch, data, device=None):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(forward_module, "model_input", no_memory)
    with pytest.raises(TrainingError, match="out of GPU memory at iteration 1.*batch_size"):
        train(tiny_config(tiny_videos, tmp_path / "run"))


def test_non_finite_validation_scores_stop_training_and_pick_no_best(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    poisoned = ckpt.save_checkpoint(
        {"model": non_finite_in_eval(build_model(cfg.model))}, tmp_path / "poisoned.pt"
    )
    cfg = tiny_config(tiny_videos, tmp_path / "run", model={"weights": str(poisoned)})
    with pytest.raises(TrainingError) as info:
        train(cfg)
    message = str(info.value)
    saved = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    assert "\n" not in message and str(saved) in message
    assert "non-finite scores (NaN/Inf) for 4 of 4 videos" in message
    # the message points at the cause: the BatchNorm statistics
    state = non_finite_in_eval(build_model(cfg.model))
    stats = [k for k in state if k.endswith(("running_mean", "running_var"))]
    first = next(k for k in stats if k.endswith("running_var"))
    assert (
        f"BatchNorm running statistics are non-finite after training: 1 of {len(stats)} buffers, "
        f"first {first} ({state[first].numel()} of {state[first].numel()} values NaN/Inf). "
        "Lower train.lr or set train.clip_grad"
    ) in message
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert ckpt.load_checkpoint(saved)["best_acc"] == -1.0
    epochs = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 1 and "val_top1" not in epochs[0]


def test_non_finite_statistics_after_precise_bn_skip_validation_and_say_what_to_change(
    tiny_videos, tmp_path, monkeypatch
):
    """As a fine-tune with the K400 precise-BN settings (released update, moving average) can end:
    the statistics hold a NaN after precise BN (here put there by hand). Validation would score
    NaN for every video (hours on Kinetics): it is skipped, and the message names the layer and
    the setting that repairs it, which a resumed run then shows."""
    real = trainer_module.run_precise_bn

    def diverging(run, batches):
        result = real(run, batches)
        run.model.tail.bn.running_var[1] = math.inf
        return result

    validations = []
    real_evaluate = trainer_module.evaluate
    monkeypatch.setattr(trainer_module, "run_precise_bn", diverging)
    monkeypatch.setattr(
        trainer_module, "evaluate", lambda *a: validations.append(1) or real_evaluate(*a)
    )
    k400 = {"precise_bn": 5, "precise_bn_update": "released", "precise_bn_average": "ema"}
    cfg = tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1, **k400})
    with pytest.raises(TrainingError) as info:
        train(cfg)
    message = str(info.value)
    saved = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    assert "\n" not in message and validations == []
    assert message.startswith(
        f"epoch 1 ({saved}): validation skipped (every video would score NaN); best.pt was not "
        "updated. BatchNorm running statistics are non-finite after precise BN: 1 of "
    )
    assert "first tail.bn.running_var (1 of " in message
    assert "Set train.precise_bn_average=exact" in message
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    [epoch] = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "epoch"]
    assert epoch["val_skipped"] == 1 and "val_top1" not in epoch

    # the advice works: the exact average recomputes the statistics of the resumed run
    monkeypatch.setattr(trainer_module, "run_precise_bn", real)
    exact = {**k400, "precise_bn_average": "exact"}
    result = train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 2, **exact}))
    assert validations == [1] and math.isfinite(result["val_loss"])
    assert ckpt.load_checkpoint(saved)["model"]["tail.bn.running_var"].isinf().any()


def test_non_finite_scores_with_sane_statistics_suggest_precise_bn(
    tiny_videos, tmp_path, monkeypatch
):
    """BatchNorm statistics that lag the weights (finite, but far from what eval-mode inputs
    need) overflow a from-scratch GloRe net in eval mode: without precise BN, say so."""
    monkeypatch.setattr(trainer_module, "evaluate", lambda *a: {"val_non_finite": 3})
    with pytest.raises(TrainingError) as info:
        train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1}))
    message = str(info.value)
    assert "non-finite scores (NaN/Inf) for 3 of 4 videos" in message
    assert "BatchNorm running statistics are" not in message
    assert message.endswith(
        "may need precise BN, as BatchNorm statistics that lag the weights overflow in eval mode: "
        "train.precise_bn=6 train.precise_bn_update=none train.precise_bn_average=exact, as "
        "configs/demo.yaml"
    )


def test_statistics_problem_names_huge_values():
    net = nn.Sequential(nn.BatchNorm3d(4), nn.BatchNorm3d(2))
    assert statistics_problem(net) is None
    net[1].running_mean[0] = -3e21
    net[0].running_var[2] = 2e20
    assert statistics_problem(net) == (
        "huge",
        "2 of 4 buffers above 1e+20, largest 1.running_mean (3.00e+21)",
    )
    net[1].running_var[1] = math.nan
    assert statistics_problem(net) == (
        "non-finite",
        "1 of 4 buffers, first 1.running_var (1 of 2 values NaN/Inf)",
    )


def test_a_plot_that_fails_is_a_warning(tiny_videos, tmp_path, monkeypatch, caplog):
    def broken(run_dir):
        raise RuntimeError("matplotlib backend missing\nmore details")

    monkeypatch.setattr(trainer_module, "plot_curves", broken)
    result = train(tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1}))
    assert result["epoch"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["curves.png not drawn: matplotlib backend missing"]


def _fake_clock(monkeypatch) -> list[float]:
    """The meter's clock, moved by hand: time passes only where a test says so."""
    now = [0.0]
    monkeypatch.setattr(meter_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def test_step_meter_counts_only_the_loaders_time_as_data_wait(monkeypatch):
    now = _fake_clock(monkeypatch)

    def loader():
        for batch in range(3):
            now[0] += 2.0  # the loader takes 2 s per batch
            yield batch

    meter = StepMeter()
    for _ in meter.timed(loader()):
        now[0] += 3.0  # step, log line, progress bar, checkpoint: 3 s
        meter.step_done(4)
    assert meter.steps == 3 and meter.clips == 12
    assert meter.data_wait_pct == pytest.approx(100 * 6 / 15)
    assert meter.clips_per_s == pytest.approx(12 / 15)
    assert meter.eta(10) == pytest.approx(10 * 15 / 3)


def test_a_slow_checkpoint_is_busy_time_not_data_wait(tiny_videos, tmp_path, monkeypatch):
    now = _fake_clock(monkeypatch)
    real_save = trainer_module.save

    def slow_save(*args, **kwargs):
        now[0] += 100.0  # a checkpoint on a slow disk: the only time that passes
        return real_save(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "save", slow_save)
    cfg = tiny_config(tiny_videos, tmp_path / "run", train={"epochs": 1, "ckpt_every_iters": 1})
    train(cfg)
    steps = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "train_step"]
    assert [r["data_wait"] for r in steps] == [0.0] * 4
    # step k (2 clips each) is reported after the k - 1 saves before it
    assert [r["clips_per_s"] for r in steps[1:]] == pytest.approx([4 / 100, 6 / 200, 8 / 300])


def test_evaluate_gives_accuracies_or_only_the_count_of_non_finite_videos(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    loader = build_loader(cfg, "val", distributed=False, batch_size=2)
    cpu = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    fp32 = FastPath(None, False, False)
    model = build_model(cfg.model)
    assert sorted(evaluate(model, loader, cfg, cpu, fp32)) == ["val_loss", "val_top1", "val_top5"]
    model.load_state_dict(non_finite_in_eval(model))
    assert evaluate(model, loader, cfg, cpu, fp32) == {"val_non_finite": 4}
