"""The one model loader (``models.loading.load_model``): exact loads for test, predict and export,
and the fine-tuning rules of ``model.weights`` (every tensor whose name and shape fit; a new
classifier for another class count; class rows put in the run's order; ``model.weights_skip``)."""

import logging

import pytest
import torch

from tests.helpers import randomized
from videoglore.config import ModelConfig
from videoglore.errors import CheckpointError
from videoglore.models import build_model
from videoglore.models.loading import load_model
from videoglore.models.weights import read_model_file

TINY = dict(arch="resnet", glore=False, width=0.0625, dropout=0.0)


def _ours(tmp_path, classes, name="source.pt", **model):
    """Our checkpoint format with class names: a randomised net of len(classes) outputs."""
    source = randomized(build_model(ModelConfig(**(TINY | model), num_classes=len(classes))))
    path = tmp_path / name
    torch.save({"model": source.state_dict(), "classes": classes}, path)
    return path, source.state_dict()


def _messages(caplog, word):
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


def test_another_class_count_keeps_the_backbone_and_renews_the_classifier(tmp_path, caplog):
    path, saved = _ours(tmp_path, ["a", "b", "c"])
    cfg = ModelConfig(**TINY, num_classes=5, weights=str(path))
    caplog.set_level(logging.INFO)
    torch.manual_seed(7)
    model, source = load_model(cfg, cfg.weights, classes=list("vwxyz"), fine_tune=True)
    torch.manual_seed(7)
    fresh = build_model(cfg)  # what a new classifier is: the same init as an untrained net
    for key, value in model.state_dict().items():
        if key.startswith("classifier."):
            assert torch.equal(value, fresh.state_dict()[key]), key
        else:
            assert torch.equal(value, saved[key]), key
    assert source.classifier == "new" and source.classes == ["a", "b", "c"]
    assert source.record() == {
        "path": str(path),
        "format": "videoglore",
        "classes": ["a", "b", "c"],
        "num_classes": 3,
        "classifier": "new",
        "skipped": [],
    }
    [line] = _messages(caplog, "classifier")
    assert str(path) in line and "3 → 5 classes" in line
    [loaded] = _messages(caplog, "loaded")
    assert loaded.endswith("; 2 left at their initialisation")  # the classifier's two


def test_a_new_classifier_is_not_announced_for_a_load_that_fails(tmp_path, caplog):
    path, _ = _ours(tmp_path, ["a", "b", "c"])
    cfg = ModelConfig(**(TINY | {"width": 0.125}), num_classes=5)  # another width
    caplog.set_level(logging.INFO)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(cfg, path, classes=list("vwxyz"), fine_tune=True)
    assert _messages(caplog, "classifier") == []


def test_the_same_classes_in_another_order_reorder_the_classifier_rows(tmp_path, caplog):
    path, saved = _ours(tmp_path, ["a", "b", "c"])
    cfg = ModelConfig(**TINY, num_classes=3)
    caplog.set_level(logging.INFO)
    model, source = load_model(cfg, path, classes=["c", "a", "b"], fine_tune=True)
    state = model.state_dict()
    for key in ("classifier.weight", "classifier.bias"):
        assert torch.equal(state[key], saved[key][[2, 0, 1]]), key
    assert source.classifier == "reordered"
    [line] = _messages(caplog, "reordered")
    assert str(path) in line

    same, source = load_model(cfg, path, classes=["a", "b", "c"], fine_tune=True)
    assert torch.equal(same.state_dict()["classifier.weight"], saved["classifier.weight"])
    assert source.classifier == "kept"


def test_other_classes_of_the_same_count_are_refused_with_the_way_out(tmp_path):
    path, _ = _ours(tmp_path, ["a", "b", "c"])
    cfg = ModelConfig(**TINY, num_classes=3)
    with pytest.raises(CheckpointError) as info:
        load_model(cfg, path, classes=["a", "b", "z"], fine_tune=True)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "'c'" in message and "'z'" in message and "model.weights_skip" in message
    # the way out: a new classifier on purpose
    cfg.weights_skip = ["classifier.*"]
    _, source = load_model(cfg, path, classes=["a", "b", "z"], fine_tune=True)
    assert source.classifier == "new" and source.skipped == ["classifier.bias", "classifier.weight"]


def test_another_net_is_refused_naming_the_keys_and_weights_skip(tmp_path):
    path, saved = _ours(tmp_path, ["a", "b"])  # no GloRe units
    cfg = ModelConfig(**(TINY | {"glore": True}), num_classes=2)
    with pytest.raises(CheckpointError) as info:
        load_model(cfg, path, classes=["a", "b"], fine_tune=True)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path} (videoglore format)")
    assert "missing: conv3.B01_extra." in message
    assert "model.weights_skip" in message and "strict=False" not in message

    cfg.weights_skip = ["*_extra.*"]
    model, source = load_model(cfg, path, classes=["a", "b"], fine_tune=True)
    assert source.skipped and all("_extra." in k for k in source.skipped)
    assert torch.equal(
        model.state_dict()["conv2.B01.conv_m1.conv.weight"], saved["conv2.B01.conv_m1.conv.weight"]
    )


def test_exact_loads_accept_every_format_and_nothing_partial(tmp_path):
    source = randomized(build_model(ModelConfig(**TINY, num_classes=2))).state_dict()
    files = {
        "ours.pt": {"model": source, "classes": ["a", "b"], "config": {"model": {}}},
        "released.pth": {"epoch": 0, "state_dict": {f"module.{k}": v for k, v in source.items()}},
        "bare.pt": {f"_orig_mod.{k}": v for k, v in source.items()},
    }
    cfg = ModelConfig(**TINY, num_classes=2)
    for name, content in files.items():
        torch.save(content, tmp_path / name)
        file = read_model_file(tmp_path / name)
        model, _ = load_model(cfg, file)
        for key, value in model.state_dict().items():
            assert torch.equal(value, source[key]), (name, key)
    assert read_model_file(tmp_path / "ours.pt").classes == ["a", "b"]
    assert read_model_file(tmp_path / "released.pth").config is None
    # exact: another class count is an error, never a new classifier
    with pytest.raises(CheckpointError, match=r"wrong shape: classifier\.weight"):
        load_model(ModelConfig(**TINY, num_classes=3), read_model_file(tmp_path / "bare.pt"))


def test_pretrained_is_inflated_before_the_weights_are_loaded(tmp_path):
    path, saved = _ours(tmp_path, ["a", "b"])
    sd2d = {
        k: (v[:, :, 0] if v.dim() == 5 else v)
        for k, v in build_model(ModelConfig(**TINY, num_classes=2)).state_dict().items()
    }
    pretrained = tmp_path / "resnet50-lite.pth"
    torch.save(sd2d, pretrained)
    cfg = ModelConfig(**TINY, num_classes=2, pretrained=str(pretrained))
    inflated, source = load_model(cfg, classes=["a", "b"], fine_tune=True)
    assert source is None
    kernel = inflated.state_dict()["conv2.B02.conv_m2.conv.weight"]  # (O, I, 1, 3, 3)
    torch.testing.assert_close(kernel[:, :, 0], sd2d["conv2.B02.conv_m2.conv.weight"])
    both, _ = load_model(cfg, path, classes=["a", "b"], fine_tune=True)
    for key, value in both.state_dict().items():
        assert torch.equal(value, saved[key]), key  # the weights win
