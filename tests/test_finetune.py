"""Fine-tuning through ``model.weights``: onto another class set in training, the source recorded in
the run's checkpoints, and the advice when a file does not fit."""

import logging

import pytest
import torch

from tests.helpers import tiny_config
from videoglore.config import ModelConfig
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.trainer import train
from videoglore.errors import CheckpointError
from videoglore.models import build_model


def _source(tmp_path, classes, **model):
    """A checkpoint of ours with ``classes`` (a net like tiny_config's, randomised)."""
    torch.manual_seed(3)
    cfg = ModelConfig(glore=False, width=0.0625, dropout=0.0, num_classes=len(classes), **model)
    state = build_model(cfg).state_dict()
    path = tmp_path / "source.pt"
    ckpt.save_checkpoint({"model": state, "classes": classes}, path)
    return path, state


def test_weights_of_another_class_count_fine_tune_and_are_recorded(tiny_videos, tmp_path, caplog):
    path, _ = _source(tmp_path, ["x", "y", "z"])
    run = tmp_path / "run"
    cfg = tiny_config(
        tiny_videos, run, model={"weights": str(path)}, train={"epochs": 1, "val_every": 0}
    )
    caplog.set_level(logging.INFO)
    assert train(cfg)["epoch"] == 1
    saved = ckpt.load_checkpoint(ckpt.epoch_path(run, 1))
    assert saved["classes"] == ["class_0", "class_1"]
    assert saved["weights_source"] == {
        "path": str(path),
        "format": "videoglore",
        "classes": ["x", "y", "z"],
        "num_classes": 3,
        "classifier": "new",
        "skipped": [],
    }
    assert any("3 → 2 classes" in r.getMessage() for r in caplog.records)


def test_weights_of_another_net_name_the_keys_and_the_way_out(tiny_videos, tmp_path):
    path, _ = _source(tmp_path, ["class_0", "class_1"])  # without GloRe units
    cfg = tiny_config(tiny_videos, tmp_path / "run", model={"weights": str(path), "glore": True})
    with pytest.raises(CheckpointError) as info:
        train(cfg)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "missing: conv3.B01_extra" in message
    assert "model.weights_skip" in message and "strict=False" not in message
    assert not (tmp_path / "run" / "checkpoints").exists()
