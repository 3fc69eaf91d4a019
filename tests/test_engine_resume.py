"""Checkpoints: atomic files, fallback past a corrupt one, and exact resume (also after SIGKILL)."""

import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from tests.helpers import start_training, tiny_config, tiny_config_dict
from videoglore.config import TrainConfig, load_config
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.optim import build_optimizer, build_scheduler
from videoglore.engine.run_log import read_log
from videoglore.engine.trainer import train
from videoglore.errors import CheckpointError


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs between {a} and {b}"


def test_atomic_save_and_corrupt_file_is_reported(tmp_path):
    path = ckpt.save_checkpoint({"model": {"w": torch.ones(3)}, "epoch": 1}, tmp_path / "a.pt")
    assert ckpt.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp file left
    path.write_bytes(path.read_bytes()[:50])  # torn write
    with pytest.raises(CheckpointError, match="a.pt: cannot read checkpoint"):
        ckpt.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_order_puts_mid_epoch_files_between_epochs(tmp_path):
    names = [
        "epoch_0001.pt",
        "epoch_0001_iter_00000006.pt",
        "epoch_0000_iter_00000002.pt",
        "epoch_0002.pt",
        "best.pt",
    ]
    for name in names:
        ckpt.save_checkpoint({"model": {}}, tmp_path / "checkpoints" / name)
    order = [p.name for p in ckpt.training_checkpoints(tmp_path)]
    assert order == [
        "epoch_0000_iter_00000002.pt",
        "epoch_0001.pt",
        "epoch_0001_iter_00000006.pt",
        "epoch_0002.pt",
    ]
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in ckpt.training_checkpoints(tmp_path)] == names[1:4:2]
    assert (tmp_path / "checkpoints" / "best.pt").is_file()


def test_corrupt_newest_checkpoint_falls_back_and_resumes_exactly(tiny_videos, tmp_path, caplog):
    extra = {"epochs": 2, "ckpt_every_iters": 3, "keep_last": 10}
    train(tiny_config(tiny_videos, tmp_path / "straight", train=extra))
    run = tmp_path / "stopped"
    cfg = tiny_config(tiny_videos, run, train=extra)
    train(cfg)
    # Pretend the process died while writing epoch 2: its file is torn. The newest readable one
    # is the mid-epoch checkpoint after iteration 6 (epoch 2, batch 2 of 4).
    final = run / "checkpoints" / "epoch_0002.pt"
    torn = final.read_bytes()[:1000]
    final.write_bytes(torn)
    (run / "checkpoints" / "best.pt").unlink()
    result = train(cfg)
    assert "skipping unreadable checkpoint" in caplog.text and "epoch_0002.pt" in caplog.text
    assert (run / "checkpoints" / "unreadable" / "epoch_0002.pt").read_bytes() == torn  # kept
    starts = [r for r in read_log(run / "log.jsonl") if r["kind"] == "start"]
    assert [s["step"] for s in starts] == [0, 6]
    assert result["iteration"] == 8
    _assert_same_weights(tmp_path / "straight" / "checkpoints" / "epoch_0002.pt", final)
    straight = [r for r in read_log(tmp_path / "straight" / "log.jsonl") if r["kind"] == "epoch"]
    resumed = [r for r in read_log(run / "log.jsonl") if r["kind"] == "epoch"]
    assert resumed[-1]["train_loss"] == pytest.approx(straight[-1]["train_loss"], rel=1e-6)


def _write_config(tiny_videos, out_dir: Path, path: Path) -> Path:
    raw = tiny_config_dict(tiny_videos, out_dir)
    raw["train"].update({"epochs": 4, "ckpt_every_iters": 2, "keep_last": 20, "val_every": 0})
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sigkill_mid_epoch_then_rerun_gives_the_same_weights(tiny_videos, tmp_path):
    killed_cfg = _write_config(tiny_videos, tmp_path / "b", tmp_path / "b.yaml")
    proc = start_training(killed_cfg)
    first_mid_epoch = tmp_path / "b" / "checkpoints" / "epoch_0001_iter_00000006.pt"
    deadline = time.time() + 120
    while not first_mid_epoch.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(r["step"] for r in read_log(tmp_path / "b" / "log.jsonl"))
    assert killed_at < 16, "killed too late to test a resume"
    # the uninterrupted reference runs in this process (same code, same single thread)
    train(load_config(_write_config(tiny_videos, tmp_path / "a", tmp_path / "a.yaml")))
    rerun = start_training(killed_cfg)
    out, _ = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, out
    starts = [r for r in read_log(tmp_path / "b" / "log.jsonl") if r["kind"] == "start"]
    assert len(starts) == 2 and 6 <= starts[1]["step"] < 16
    _assert_same_weights(
        tmp_path / "a" / "checkpoints" / "epoch_0004.pt",
        tmp_path / "b" / "checkpoints" / "epoch_0004.pt",
    )


def test_resume_with_another_global_batch_rescales_lr_and_restarts_the_epoch(
    tiny_videos, tmp_path, caplog
):
    run = tmp_path / "run"
    extra = {"epochs": 2, "ckpt_every_iters": 3, "keep_last": 10, "val_every": 0}
    train(tiny_config(tiny_videos, run, train=extra))
    (run / "checkpoints" / "epoch_0002.pt").unlink()  # newest left: mid-epoch, iteration 6
    changed = tiny_config(tiny_videos, run, train={**extra, "batch_size": 4}, data={"flip": False})
    result = train(changed)
    assert "epoch 2 restarts from its first batch" in caplog.text
    [line] = [
        r.getMessage() for r in caplog.records if "differ from the checkpoint" in r.getMessage()
    ]
    assert line.endswith(": data.flip True → False, train.batch_size 2 → 4")
    assert result["iteration"] == 4  # 8 videos / 4 = 2 iterations per epoch now
    last = [r for r in read_log(run / "log.jsonl") if r["kind"] == "train_step"][-1]
    assert last["step"] == 4 and last["lr"] == pytest.approx(0.02 * 4 / 2)  # lr × batch / lr_batch


def _tiny_modules(**train) -> dict:
    net = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4))
    cfg = TrainConfig(**train)
    optimizer = build_optimizer(net, cfg, global_batch=8)
    return dict(
        model=net,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, 10, cfg),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
    )


def _saved(rng: list[dict], **train) -> dict:
    state = ckpt.TrainState(epoch=1, iteration=10)
    return ckpt.payload(
        state,
        **_tiny_modules(**train),
        rng=rng,
        config={},
        classes=[],
        iters_per_epoch=10,
        world_size=len(rng),
        metrics={},
    )


def _draws() -> tuple:
    return random.random(), float(np.random.random()), float(torch.rand(1))


def test_ranks_beyond_the_saved_ones_get_seeds_of_their_own():
    torch.manual_seed(5)
    saved = _saved([ckpt.rng_state()])  # one rank saved, resumed on three
    draws = {}
    for rank, seed in ((0, 0), (1, 0), (2, 0), (1, 0), (1, 7)):
        ckpt.restore(saved, "a.pt", ckpt.TrainState(), rank=rank, seed=seed, **_tiny_modules())
        draws.setdefault((rank, seed), []).append(_draws())
    assert draws[1, 0][0] == draws[1, 0][1]  # a function of (seed, rank, iteration)
    assert len({d[0] for d in draws.values()}) == 4  # rank 0 resumes rank 0's state


def test_optimizer_state_of_other_parameter_groups_is_one_line():
    saved = _saved([ckpt.rng_state()])  # 2 groups: decayed, not decayed
    modules = _tiny_modules(lr_mult={"0.*": 0.5})  # 4 groups
    with pytest.raises(CheckpointError) as info:
        ckpt.restore(saved, "run/a.pt", ckpt.TrainState(), rank=0, seed=0, **modules)
    message = str(info.value)
    assert "\n" not in message and message.startswith("run/a.pt: the optimizer state")
    assert "train.lr_mult" in message and "train.weight_decay_norm" in message
