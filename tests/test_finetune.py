"""Fine-tuning through ``model.weights``: onto another class set in training, the source recorded in
the run's checkpoints, the advice when a file does not fit; the fine-tune configs, each run on a
CPU-sized copy; and a fine-tune end to end through `run.py train` and `run.py test`."""

import json
import logging
import math

import pytest
import torch

from tests.helpers import REPO, tiny_config, write_video_dataset
from videoglore.cli import main
from videoglore.config import ModelConfig, load_config
from videoglore.engine import checkpoint as ckpt
from videoglore.engine import trainer
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


# ---- the fine-tune configs, and fine-tuning end to end ---------------------------------------

FINETUNE_CONFIGS = {
    # config: (model.weights zoo name, lr_mult of all but the classifier, flip)
    "ucf101_mfnet_finetune.yaml": ("zoo:mfnet_k400", 0.2, True),
    "hmdb51_mfnet_finetune.yaml": ("zoo:mfnet_k400", 0.2, True),
    "ucf101_r50_glore_finetune.yaml": ("zoo:r50_glore_k400", 0.5, True),
    "ssv2_r50_glore_finetune.yaml": ("zoo:r50_glore_k400", 0.5, False),
}
# What makes a shipped config CPU-sized: the data, sizes and width only; the recipe stays.
TINY = [
    "data.frame_interval=1",
    "data.train_scale=[32,36]",
    "data.crop_size=32",
    "data.test_scale=32",
    "data.num_workers=0",
    "model.width=0.0625",
    "train.batch_size=4",
    "test.num_clips=2",
    "test.batch_size=3",
    "runtime.device=cpu",
]


@pytest.fixture(scope="module")
def sources(tiny_videos, tmp_path_factory):
    """Demo-like trained checkpoints of ours on the 2-class tiny videos: {name: best.pt} for
    "resnet" (R50 + GloRe), "plain" (R50) and "mfnet"."""
    out = tmp_path_factory.mktemp("sources")
    found = {}
    nets = (("resnet", "resnet", True), ("plain", "resnet", False), ("mfnet", "mfnet", False))
    for name, arch, glore in nets:
        cfg = tiny_config(
            tiny_videos,
            out / name,
            model={"arch": arch, "glore": glore},
            # forward-only precise BN, as the demo trains its GloRe net from scratch
            train={"epochs": 3, "precise_bn": 4, "precise_bn_update": "none",
                   "precise_bn_average": "exact"},
        )  # fmt: skip
        train(cfg)
        found[name] = ckpt.checkpoint_dir(cfg.output.dir) / ckpt.BEST_NAME
    return found


@pytest.fixture(scope="module")
def other_classes(tmp_path_factory):
    """A class-folder dataset of 3 other classes, prepared as a user would (`run.py prepare`)."""
    root = tmp_path_factory.mktemp("other_classes")
    videos = write_video_dataset(root / "raw", num_classes=3, videos_per_class=6, val_per_class=3)
    for split in ("train", "val"):
        for c, name in enumerate(("dim", "grey", "light")):
            (videos["root"] / "videos" / split / f"class_{c}").rename(
                videos["root"] / "videos" / split / name
            )
    prepared = root / "prepared"
    folders = [f"--folder={s}={videos['root'] / 'videos' / s}" for s in ("train", "val")]
    argv = ["prepare", *folders, "--out", str(prepared), "--short-side", "32", "--workers", "1"]
    assert main([*argv, "--no-progress"]) == 0
    return prepared


def _data(prepared) -> list[str]:
    return [
        f"data.train_list={prepared / 'train.csv'}",
        f"data.val_list={prepared / 'val.csv'}",
        f"data.classes={prepared / 'classes.json'}",
        "model.num_classes=3",
    ]


@pytest.mark.parametrize("name", FINETUNE_CONFIGS)
def test_fine_tune_configs_cite_their_recipe(name):
    weights, base_mult, flip = FINETUNE_CONFIGS[name]
    cfg = load_config(REPO / "configs" / name)
    assert cfg.model.weights == weights and not cfg.model.pretrained
    assert cfg.train.lr_mult == {"classifier.*": 1.0, "*": base_mult}
    assert cfg.data.flip is flip
    text = (REPO / "configs" / name).read_text()
    for line in text.splitlines():  # every recipe value says where it comes from
        key = line.strip().split(":")[0]
        if key in ("lr", "lr_mult", "epochs", "num_frames", "frame_interval", "flip"):
            assert "#" in line, line


@pytest.mark.parametrize("name", FINETUNE_CONFIGS)
def test_fine_tune_configs_train_on_a_tiny_copy(name, sources, other_classes, tmp_path):
    """Each config's own recipe (lr at its batch, lr_mult, warmup, precise BN) on CPU-sized data
    from a trained checkpoint of its architecture: finite validation at every epoch and test."""
    cfg = load_config(REPO / "configs" / name)
    run = tmp_path / "run"
    overrides = [
        *TINY,
        *_data(other_classes),
        f"model.weights={sources[cfg.model.arch]}",  # resnet: with GloRe units, as the config
        "train.epochs=2",
        f"train.precise_bn={min(cfg.train.precise_bn, 2)}",  # batches: the tiny epoch has 5
        f"output.dir={run}",
    ]
    assert main(["train", "-c", str(REPO / "configs" / name), *overrides]) == 0
    epochs = [e for e in map(json.loads, (run / "log.jsonl").read_text().splitlines())
              if e["kind"] == "epoch"]  # fmt: skip
    assert len(epochs) == 2 and all(math.isfinite(e["val_loss"]) for e in epochs), epochs
    assert main(["test", "-c", str(REPO / "configs" / name), *overrides]) == 0
    assert json.loads((run / "metrics.json").read_text())["num_videos"] == 9


def test_fine_tune_end_to_end_from_a_trained_checkpoint(
    sources, other_classes, tmp_path, monkeypatch, capsys
):
    """`run.py train` then `run.py test` with configs/ucf101_r50_glore_finetune.yaml onto 3 other
    classes: the backbone starts from the checkpoint's weights, the result is above chance.
    Without GloRe units: at this width a few steps leave their eval-mode outputs too unsteady to
    learn from (tests/helpers.py); loading the units is tested above."""
    at_start = {}
    real_epoch = trainer.train_one_epoch

    def first_epoch(run):
        if not at_start:
            at_start.update({k: v.clone() for k, v in run.model.state_dict().items()})
        return real_epoch(run)

    monkeypatch.setattr(trainer, "train_one_epoch", first_epoch)
    config = str(REPO / "configs" / "ucf101_r50_glore_finetune.yaml")
    run = tmp_path / "run"
    overrides = [
        *TINY,
        *_data(other_classes),
        f"model.weights={sources['plain']}",
        "model.glore=false",
        "train.epochs=3",
        "train.lr=0.02",  # a few steps of a tiny batch must learn
        "train.lr_batch=4",
        f"output.dir={run}",
    ]
    assert main(["train", "-c", config, *overrides]) == 0
    source = ckpt.load_checkpoint(sources["plain"])
    for key in ("conv1.conv.weight", "conv3.B01.conv_m1.conv.weight", "tail.bn.running_var"):
        assert torch.equal(at_start[key], source["model"][key]), key
    assert at_start["classifier.weight"].shape == (3, source["model"]["classifier.weight"].shape[1])
    saved = ckpt.load_checkpoint(ckpt.checkpoint_dir(run) / ckpt.BEST_NAME)
    assert saved["classes"] == ["dim", "grey", "light"]
    assert saved["weights_source"]["classes"] == ["class_0", "class_1"]
    assert saved["weights_source"]["classifier"] == "new"

    capsys.readouterr()
    assert main(["test", "-c", config, *overrides]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_videos"] == 9 and metrics["model"]["num_classes"] == 3
    assert metrics["video_top1"] >= 2 / 3, metrics  # chance: 1/3
