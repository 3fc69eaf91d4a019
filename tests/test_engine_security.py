"""No code from a checkpoint (every reader uses torch.load weights_only=True), and our own
checkpoints, old and new, load as weights for fine-tuning (``model.weights=``)."""

import builtins
import random

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import tiny_config, tiny_config_dict
from videoglore.cli import main
from videoglore.config import config_to_dict
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.trainer import train
from videoglore.models import build_model, load_model, load_weights


class _Payload:
    """Unpickling this object runs Python code that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"import pathlib; pathlib.Path({self.marker!r}).touch()",)


def _malicious_checkpoint(path, marker, cfg) -> None:
    model = build_model(cfg.model)
    state = {"model": model.state_dict(), "config": config_to_dict(cfg), "evil": _Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_malicious_checkpoint_runs_no_code_through_any_entry_point(tiny_videos, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    cfg = tiny_config(tiny_videos, run)
    evil = tmp_path / "evil.pt"
    _malicious_checkpoint(evil, marker, cfg)
    # the file is dangerous: a plain (unsafe) load runs its code
    torch.load(evil, weights_only=False)
    assert marker.exists()
    marker.unlink()

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_videos, run)))
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    entry_points = {
        "test --checkpoint": ["test", "-c", str(config), "--checkpoint", str(evil)],
        "test.checkpoint=": ["test", "-c", str(config), f"test.checkpoint={evil}"],
        "predict --checkpoint": ["predict", video, "--checkpoint", str(evil), "--device", "cpu"],
        "model.weights=": ["train", "-c", str(config), f"model.weights={evil}"],
        "model.pretrained=": ["train", "-c", str(config), f"model.pretrained={evil}"],
    }
    for name, argv in entry_points.items():
        assert main(argv) == 2, name
        line = _one_line_error(capsys)
        assert "evil.pt" in line, (name, line)
        assert not marker.exists(), name

    # the default checkpoint of `test`
    _malicious_checkpoint(run / "checkpoints" / "best.pt", marker, cfg)
    assert main(["test", "-c", str(config)]) == 2
    assert "best.pt" in _one_line_error(capsys)
    assert not marker.exists()


def test_refusal_names_the_forbidden_object(tiny_videos, tmp_path):
    evil = tmp_path / "evil.pt"
    _malicious_checkpoint(evil, tmp_path / "pwned", tiny_config(tiny_videos, tmp_path / "run"))
    with pytest.raises(Exception, match=r"evil\.pt: refused: loading it would call exec") as info:
        ckpt.load_checkpoint(evil)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_own_checkpoints_load_as_weights_for_fine_tuning(tiny_videos, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_videos, run, train={"epochs": 1, "val_every": 0})
    train(cfg)
    path = run / "checkpoints" / "epoch_0001.pt"
    # plain data only: a bare weights_only load needs no allow-list
    saved = torch.load(path, map_location="cpu", weights_only=True)
    warm, source = load_model(cfg.model, path, classes=saved["classes"], fine_tune=True)
    assert source.classifier == "kept" and source.format == "videoglore"
    for key, value in warm.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key


def test_checkpoints_with_numpy_rng_state_still_load_and_resume(tmp_path):
    model = build_model("r50", num_classes=2, width=0.0625)
    random.seed(3)
    np.random.seed(4)
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.ones(2)}
    path = tmp_path / "old.pt"
    torch.save({"model": model.state_dict(), "rng": [old_rng]}, path)
    expected = (random.random(), np.random.random())

    state = ckpt.load_checkpoint(path)
    random.seed(0)
    np.random.seed(0)
    torch_state = torch.get_rng_state()
    state["rng"][0]["torch"] = torch_state
    ckpt.set_rng_state(state["rng"][0])
    assert (random.random(), np.random.random()) == expected
    warm = build_model("r50", num_classes=2, width=0.0625)
    load_weights(warm, path)
    assert torch.equal(
        warm.state_dict()["classifier.weight"], model.state_dict()["classifier.weight"]
    )


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    np.random.normal()  # leaves a cached Gaussian in the NumPy state
    torch.manual_seed(3)
    path = ckpt.save_checkpoint({"model": {}, "rng": [ckpt.rng_state()]}, tmp_path / "a.pt")
    expected = (random.random(), np.random.normal(), np.random.random(), torch.rand(2))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    ckpt.set_rng_state(torch.load(path, weights_only=True)["rng"][0])
    got = (random.random(), np.random.normal(), np.random.random(), torch.rand(2))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_auto_resume_runs_no_code_from_a_checkpoint(tiny_videos, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    _malicious_checkpoint(
        run / "checkpoints" / "epoch_0001.pt", marker, tiny_config(tiny_videos, run)
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_videos, run)))
    assert main(["train", "-c", str(config)]) == 2
    line = _one_line_error(capsys)
    assert "epoch_0001.pt" in line and "refused" in line
    assert not marker.exists()
