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
from videoglore.models import build_model


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
