"""`test` and `predict` take the model and clip settings a checkpoint of ours carries (a key set on
the command line wins), say in one line what came from where, and record it in metrics.json;
weights-only files use the config's model; bad requests are one line before any work."""

import builtins
import csv
import errno
import json
import logging
import os

import pytest
import torch
import yaml

from tests.helpers import tiny_config, tiny_config_dict
from videoglore.cli import main
from videoglore.config import config_to_dict
from videoglore.engine import checkpoint as ckpt
from videoglore.engine import inference, tester
from videoglore.engine.inference import predict
from videoglore.engine.tester import test as run_test
from videoglore.models import build_model

# The checkpoint's net and clips: an MF-Net on 8 frames every 1 at 32 px.
CHECKPOINT_MODEL = {"arch": "mfnet", "glore": False, "width": 0.0625, "num_classes": 2}
# The user's config describes another net and other clips (as a K400 config would).
CONFIG_MODEL = {"arch": "resnet", "depth": 101, "glore": True, "width": 0.125}
CONFIG_DATA = {"num_frames": 4, "frame_interval": 2, "crop_size": 24, "test_scale": 28}
PROTOCOL = ("num_frames", "frame_interval", "crop_size", "test_scale", "normalization")


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.fixture
def checkpoint(tiny_videos, tmp_path):
    """best.pt of a run (ours: weights, config, classes) and the run's own config."""
    cfg = tiny_config(tiny_videos, tmp_path / "run", model=CHECKPOINT_MODEL)
    torch.manual_seed(0)
    state = {
        "model": build_model(cfg.model).state_dict(),
        "config": config_to_dict(cfg),
        "classes": ["class_0", "class_1"],
        "epoch": 1,
    }
    path = ckpt.checkpoint_dir(cfg.output.dir) / ckpt.BEST_NAME
    return ckpt.save_checkpoint(state, path), cfg


@pytest.fixture
def other_config(tiny_videos, tmp_path):
    """A config file for another net and other clips, writing into another run folder."""
    raw = tiny_config_dict(tiny_videos, tmp_path / "other_run")
    raw["model"].update(CONFIG_MODEL)
    raw["data"].update(CONFIG_DATA, train_scale=[28, 32])
    raw["test"].update(num_clips=3)
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_test_uses_the_checkpoints_model_and_clips_over_another_config(
    checkpoint, other_config, tmp_path, caplog
):
    path, own = checkpoint
    own.test.num_clips = 3  # the test section is the user's: same views as other.yaml
    own.output.dir = str(tmp_path / "own_run")
    want = run_test(own, checkpoint=str(path))

    caplog.set_level(logging.INFO)
    assert main(["test", "-c", str(other_config), "--checkpoint", str(path)]) == 0
    got = _metrics(tmp_path / "other_run")
    for key in ("num_videos", "video_top1", "clip_top1", "mean_class_accuracy"):
        assert got[key] == want[key], key
    assert _rows(tmp_path / "other_run" / "predictions.csv") == _rows(
        tmp_path / "own_run" / "predictions.csv"
    )
    # the protocol and the model tested are on record
    assert got["protocol"] == {
        **{key: getattr(own.data, key) for key in PROTOCOL},
        "num_clips": 3,
        "num_crops": 1,
        "sampling": "uniform",
        "aggregate": "softmax",
    }
    assert got["model"]["name"] == "mfnet" and got["model"]["width"] == 0.0625
    assert got["settings"]["not_used_from_config"] == {
        "data.crop_size": 24,
        "data.frame_interval": 2,
        "data.num_frames": 4,
        "data.test_scale": 28,
        "model.arch": "resnet",
        "model.depth": 101,
        "model.glore": True,
        "model.width": 0.125,
    }
    # ... and said in one line, naming the checkpoint, the config file and the keys
    lines = [r.getMessage() for r in caplog.records if "from the checkpoint" in r.getMessage()]
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and str(other_config) in lines[0]
    assert "model.arch=resnet" in lines[0] and "data.crop_size=24" in lines[0]


def test_a_key_given_on_the_command_line_wins_over_the_checkpoint(
    checkpoint, other_config, tmp_path, caplog
):
    path, _ = checkpoint
    caplog.set_level(logging.INFO)
    argv = ["test", "-c", str(other_config), "--checkpoint", str(path)]
    assert main([*argv, "data.crop_size=28", "data.num_frames=4"]) == 0
    got = _metrics(tmp_path / "other_run")
    assert got["protocol"]["crop_size"] == 28 and got["protocol"]["num_frames"] == 4
    assert got["protocol"]["frame_interval"] == 1  # not given: the checkpoint's
    assert got["settings"]["from_command_line"] == ["data.crop_size", "data.num_frames"]
    [line] = [r.getMessage() for r in caplog.records if "from the checkpoint" in r.getMessage()]
    assert "from the command line: data.crop_size=28, data.num_frames=4" in line


def test_an_override_the_checkpoint_cannot_load_is_one_line(checkpoint, other_config, capsys):
    path, _ = checkpoint
    argv = ["test", "-c", str(other_config), "--checkpoint", str(path), "model.num_classes=5"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert str(path) in line and "model.num_classes=5" in line
    assert "2 classes" in line  # what the checkpoint holds


def test_a_weights_only_file_is_tested_with_the_configs_model(
    checkpoint, tiny_videos, tmp_path, caplog
):
    cfg = tiny_config(tiny_videos, tmp_path / "released", model=CONFIG_MODEL, data=CONFIG_DATA)
    cfg.data.train_scale = [28, 32]
    cfg.model.pretrained = str(tmp_path / "imagenet.pth")  # for training only: never read here
    weights = build_model(cfg.model).state_dict()
    released = tmp_path / "released_ep-0000.pth"
    torch.save({"epoch": 0, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, released)
    caplog.set_level(logging.INFO)
    metrics = run_test(cfg, checkpoint=str(released))
    assert metrics["model"]["name"] == "r101_glore"
    assert metrics["protocol"]["crop_size"] == 24 and metrics["protocol"]["num_frames"] == 4
    assert metrics["settings"]["from_checkpoint"] == []
    [line] = [r.getMessage() for r in caplog.records if "weights only" in r.getMessage()]
    assert str(released) in line and "r101_glore" in line


def test_a_refused_best_checkpoint_names_the_epoch_checkpoints_to_test(
    checkpoint, other_config, capsys
):
    path, cfg = checkpoint
    state = ckpt.load_checkpoint(path)
    for epoch in (1, 2):
        ckpt.save_checkpoint(state, ckpt.epoch_path(cfg.output.dir, epoch))
    path.write_bytes(b"torn")  # best.pt unreadable
    raw = yaml.safe_load(other_config.read_text())
    raw["output"]["dir"] = cfg.output.dir
    other_config.write_text(yaml.safe_dump(raw))
    assert main(["test", "-c", str(other_config)]) == 2
    line = _error_line(capsys)
    assert "best.pt" in line and "epoch_0001.pt, epoch_0002.pt" in line
    assert "--checkpoint" in line


def test_predict_uses_the_checkpoints_settings_with_another_config(
    checkpoint, other_config, tiny_videos, caplog
):
    path, _ = checkpoint
    video = str(tiny_videos["root"] / "videos" / "val" / "class_1" / "000.mp4")
    [alone] = predict([video], path, topk=2, device="cpu")
    caplog.set_level(logging.INFO)
    [with_config] = predict([video], path, topk=2, device="cpu", config=other_config)
    assert with_config.error == "" and alone.error == ""
    # the test section is the config's (3 clips instead of 2): same labels, close scores
    assert [n for n, _ in with_config.labels] == [n for n, _ in alone.labels]
    assert with_config.labels[0][1] == pytest.approx(alone.labels[0][1], abs=0.05)
    [line] = [r.getMessage() for r in caplog.records if "from the checkpoint" in r.getMessage()]
    assert "model.arch=resnet" in line


def test_predict_of_weights_without_a_config_needs_one(checkpoint, tiny_videos, tmp_path, capsys):
    path, cfg = checkpoint
    bare = tmp_path / "bare.pt"
    torch.save({"model": ckpt.load_checkpoint(path)["model"]}, bare)
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    assert main(["predict", video, "--checkpoint", str(bare), "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert str(bare) in line and "-c" in line
    # with the run's config the same file predicts, with the class names of its data
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    argv = ["predict", video, "--checkpoint", str(bare), "-c", str(config), "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert video in out and "class_0" in out and "class_1" in out


def test_predict_checks_the_output_path_before_any_work(
    checkpoint, tiny_videos, tmp_path, capsys, monkeypatch
):
    path, _ = checkpoint
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    scored = []
    real = inference._video_scores
    monkeypatch.setattr(inference, "_video_scores", lambda *a: scored.append(a) or real(*a))
    folder = tmp_path / "results.csv"
    folder.mkdir()  # a folder in the way
    argv = ["predict", video, "--checkpoint", str(path), "--device", "cpu"]
    assert main([*argv, "--out", str(folder)]) == 2
    line = _error_line(capsys)
    assert str(folder) in line and "folder" in line
    assert scored == []
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    assert main([*argv, "--out", str(blocked / "labels.csv")]) == 2
    assert str(blocked) in _error_line(capsys) and scored == []
    # a missing folder is made
    out = tmp_path / "new" / "deeper" / "labels.json"
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())[0]["video"] == video and len(scored) == 1


def test_output_folders_that_cannot_be_written_stop_before_any_scoring(
    checkpoint, other_config, tiny_videos, tmp_path, capsys, monkeypatch
):
    """`test` into an output.dir that is a file or read-only, `predict --out` into a read-only
    folder: one line before the first video is scored, not after hours of scoring (root ignores
    permission bits, so the read-only file system is simulated at ``open``)."""
    path, _ = checkpoint
    scored = []
    real_video, real_test = inference._video_scores, tester.score_videos
    monkeypatch.setattr(inference, "_video_scores", lambda *a: scored.append(a) or real_video(*a))
    monkeypatch.setattr(
        tester, "score_videos", lambda *a, **k: scored.append(a) or real_test(*a, **k)
    )
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    argv = ["test", "-c", str(other_config), "--checkpoint", str(path)]
    assert main([*argv, f"output.dir={blocked}"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: cannot write to {blocked}: File exists") and scored == []

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    real_open = builtins.open

    def refusing(file, *args, **kwargs):
        if str(file).startswith(str(read_only)) and "w" in (args[0] if args else kwargs["mode"]):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    assert main([*argv, f"output.dir={read_only}"]) == 2
    assert _error_line(capsys).startswith(f"error: cannot write to {read_only}: Read-only")
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    out = read_only / "labels.csv"
    assert main(["predict", video, "--checkpoint", str(path), "--out", str(out)]) == 2
    assert _error_line(capsys).startswith(f"error: cannot write to {read_only}: Read-only")
    assert scored == [] and list(read_only.iterdir()) == []


def test_a_checkpoint_of_other_classes_than_the_test_list_is_one_line(
    checkpoint, other_config, tmp_path, capsys
):
    path, _ = checkpoint
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(["class_1", "class_0"]))  # the list's order differs
    argv = ["test", "-c", str(other_config), "--checkpoint", str(path)]
    assert main([*argv, f"data.classes={classes}"]) == 2
    line = _error_line(capsys)
    assert str(path) in line and str(classes) in line and "'class_0', 'class_1'" in line
    assert not (tmp_path / "other_run" / "metrics.json").exists()


def test_predict_overrides_apply_to_the_checkpoints_settings(checkpoint, tiny_videos, capsys):
    path, _ = checkpoint
    video = str(tiny_videos["root"] / "videos" / "val" / "class_1" / "000.mp4")
    seen = []
    real = inference._video_scores

    def spy(model, video, cfg, *rest):
        seen.append((cfg.test.num_clips, cfg.data.num_frames, type(model).__name__))
        return real(model, video, cfg, *rest)

    argv = ["predict", video, "--checkpoint", str(path), "--device", "cpu"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inference, "_video_scores", spy)
        assert main([*argv, "test.num_clips=1"]) == 0
        assert main([*argv, "model.num_classes=5"]) == 2
    assert seen == [(1, 8, "VideoNet")]  # the checkpoint's 8 frames, the override's 1 clip
    assert "model.num_classes=5" in _error_line(capsys)
