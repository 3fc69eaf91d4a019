"""Testing a released-format weights file (``test --checkpoint resnet50-lite_...pth``): the net of
the config's model section gets the file's weights, and the tester scores exactly as it does
for our own checkpoint holding the same weights."""

import csv
import dataclasses
import json

import pytest
import torch

from tests.helpers import tiny_config
from videoglore.config import config_to_dict
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.inference import load_model_from_checkpoint
from videoglore.engine.tester import test as run_test
from videoglore.engine.trainer import train
from videoglore.errors import CheckpointError
from videoglore.models import build_model


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_released_format_file_scores_like_our_checkpoint(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "ours", train={"epochs": 1, "val_every": 0})
    cfg.test.sampling = "released"
    train(cfg)
    ours = ckpt.checkpoint_dir(cfg.output.dir) / "epoch_0001.pt"
    weights = ckpt.load_checkpoint(ours)["model"]
    released = tmp_path / "released_ep-0000.pth"  # as the released code saves it (DataParallel)
    torch.save({"epoch": 0, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, released)

    want = run_test(cfg, checkpoint=str(ours))
    other = tiny_config(tiny_videos, tmp_path / "released", train={"epochs": 1})
    other.test.sampling = "released"
    got = run_test(other, checkpoint=str(released))
    assert got["checkpoint"] == str(released)
    for key in ("num_videos", "video_top1", "video_top5", "clip_top1", "mean_class_accuracy"):
        assert got[key] == want[key], key
    assert _rows(tmp_path / "released" / "predictions.csv") == _rows(
        tmp_path / "ours" / "predictions.csv"
    )
    saved = json.loads((tmp_path / "released" / "metrics.json").read_text())
    assert saved["num_clips"] == 2 and saved["num_crops"] == 1


def test_released_file_for_another_net_is_refused(tiny_videos, tmp_path):
    released = tmp_path / "other.pth"
    torch.save({"epoch": 0, "state_dict": {"module.fc.weight": torch.zeros(2, 3)}}, released)
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    with pytest.raises(CheckpointError, match="other.pth"):
        run_test(cfg, checkpoint=str(released))


def test_a_released_file_is_read_once(tiny_videos, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    weights = build_model(cfg.model).state_dict()
    released = tmp_path / "released_ep-0000.pth"
    torch.save({"epoch": 0, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, released)
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    assert run_test(cfg, checkpoint=str(released))["num_videos"] == 4
    assert reads == [str(released)]


def test_our_checkpoint_that_does_not_fit_its_own_config_is_one_line(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    wider = build_model(dataclasses.replace(cfg.model, width=0.125)).state_dict()
    path = ckpt.save_checkpoint(
        {"model": wider, "config": config_to_dict(cfg), "classes": ["a", "b"]}, tmp_path / "x.pt"
    )
    for run in (
        lambda: run_test(cfg, checkpoint=str(path)),
        lambda: load_model_from_checkpoint(path),
    ):
        with pytest.raises(CheckpointError) as info:
            run()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path} (videoglore format) does not fit the model: wrong shape")
        assert message.endswith(
            "its weights do not match the model of its own config: was the file edited?"
        )
