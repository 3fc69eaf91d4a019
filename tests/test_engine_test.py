"""Tester: aggregation and metrics by hand, the output files, bad videos, non-finite scores."""

import csv
import errno
import json
import math
import os
import re

import numpy as np
import pytest
import torch

from data_prep.lists import VideoRecord, read_video_list, write_video_list
from tests.helpers import non_finite_in_eval, tiny_config
from videoglore.config import config_to_dict
from videoglore.data import build_dataset, normalize
from videoglore.engine import checkpoint as ckpt
from videoglore.engine import inference, tester
from videoglore.engine.checkpoint import save_checkpoint
from videoglore.engine.metrics import (
    aggregate_views,
    confusion_matrix,
    mean_class_accuracy,
    top_confused_pairs,
    topk_accuracy,
)
from videoglore.engine.results import mark_stale
from videoglore.engine.scoring import per_class_accuracy
from videoglore.errors import CheckpointError, OutputError
from videoglore.models import build_model


def test_aggregate_views_by_hand():
    logits = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, 0.0, 3.0], [0.0, 0.0, 1.0]]])
    expected = []
    for video in logits.tolist():
        probs = [[math.exp(v) / sum(math.exp(u) for u in view) for v in view] for view in video]
        expected.append([(a + b) / 2 for a, b in zip(*probs, strict=True)])
    got = aggregate_views(logits, "softmax")
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(got.sum(dim=1), torch.ones(2))
    assert torch.equal(aggregate_views(logits, "logits"), torch.tensor([[0.5, 1, 0], [0, 0, 2]]))
    # softmax vs logits averaging can disagree: view scores (0, 2) vs (1.5, 1.5) style cases
    with pytest.raises(ValueError, match="softmax"):
        aggregate_views(logits, "max")


def test_accuracy_metrics_by_hand():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 1, 0, 0])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert topk_accuracy(scores, labels, 5) == 1.0  # k capped at the number of classes
    preds = scores.argmax(1).numpy()  # [1, 0, 2, 0]
    # class 0: 1 of 2 right, class 1: 1 of 2 right; class 2 absent → mean of 0.5 and 0.5
    assert mean_class_accuracy(preds, labels.numpy(), 3) == pytest.approx(0.5)
    assert mean_class_accuracy(np.array([0, 0, 0]), np.array([0, 0, 1]), 2) == pytest.approx(0.5)
    matrix = confusion_matrix(np.array([1, 1, 2, 0, 1]), np.array([0, 0, 0, 0, 2]), 3)
    assert top_confused_pairs(matrix, 5) == [(0, 1, 2), (2, 1, 1), (0, 2, 1)]


def test_per_class_accuracy_by_hand():
    predictions, labels = np.array([0, 1, 1, 2, 0]), np.array([0, 1, 0, 2, 2])
    assert per_class_accuracy(predictions, labels, ["a", "b", "c", "d"]) == {
        "a": {"accuracy": 0.5, "count": 2},
        "b": {"accuracy": 1.0, "count": 1},
        "c": {"accuracy": 0.5, "count": 2},
        "d": {"accuracy": None, "count": 0},  # no test video: no accuracy (JSON null)
    }


@pytest.fixture
def tested_run(tiny_videos, tmp_path):
    """A run dir with a (randomly initialised) checkpoint and a val list with one broken file."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    records = list(read_video_list(tiny_videos["val"]))
    records.insert(1, VideoRecord(str(broken), 1, "class_1", 16, 25.0, 32, 32))
    val = tmp_path / "val_with_broken.csv"
    write_video_list(val, records)
    cfg = tiny_config(
        tiny_videos,
        tmp_path / "run",
        data={"val_list": str(val)},
        test={
            "num_clips": 2,
            "num_crops": 3,
            "batch_size": 2,
            "save_scores": True,
            "max_views_per_forward": 4,
        },
    )
    torch.manual_seed(0)
    model = build_model(cfg.model)
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "classes": ["class_0", "class_1"],
        "epoch": 1,
        "iteration": 4,
    }
    save_checkpoint(state, tmp_path / "run" / "checkpoints" / "epoch_0001.pt")
    return cfg, model.eval(), records, broken


def test_tester_writes_metrics_predictions_scores(tested_run, tmp_path, capsys):
    cfg, model, records, broken = tested_run
    metrics = tester.test(cfg)
    # the progress bar counted every video of the list, the unreadable one too, and stays shown
    assert re.search(r"test: 100%.* 5/5 \[\d\d:\d\d<00:00", capsys.readouterr().err)
    run = tmp_path / "run"
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["num_videos"] == metrics["num_videos"] == 4
    assert on_disk["num_skipped"] == 1 and on_disk["skipped"] == [str(broken)]
    assert on_disk["video_top5"] == on_disk["clip_top5"] == 1.0  # 2 classes
    assert on_disk["checkpoint"] == str(run / "checkpoints" / "epoch_0001.pt")
    with open(run / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["video"] for r in rows] == [r.path for r in records if r.path != str(broken)]
    assert all(r["top1"] in ("class_0", "class_1") and "top2" in r for r in rows)
    scores = np.load(run / "scores.npy")
    order = (run / "scores_order.txt").read_text().splitlines()
    assert scores.shape == (4, 2) and order == [r["video"] for r in rows]
    # video-level scores equal the hand computation: softmax of every view, averaged
    dataset = build_dataset(cfg, "test")
    video_hits, view_hits, class_hits = [], [], {0: [], 1: []}
    for i, path in enumerate(order):
        index = [r.path for r in records].index(path)
        views, label, _ = dataset[index]  # (6, 3, T, S, S): 2 clips × 3 crops
        assert views.shape[0] == 6
        with torch.no_grad():
            logits = model(normalize(views, cfg.data.normalization))
        expected = logits.softmax(dim=1).mean(dim=0)
        assert np.allclose(scores[i], expected.numpy(), atol=1e-5)
        top1 = "class_0" if scores[i, 0] >= scores[i, 1] else "class_1"
        assert rows[i]["top1"] == top1
        assert float(rows[i]["p1"]) == pytest.approx(scores[i].max(), abs=1e-4)
        video_hits.append(int(expected.argmax()) == label)
        class_hits[label].append(video_hits[-1])
        view_hits += (logits.argmax(dim=1) == label).tolist()
    # ... and so do the accuracies
    assert on_disk["video_top1"] == pytest.approx(np.mean(video_hits))
    assert on_disk["clip_top1"] == pytest.approx(np.mean(view_hits))
    per_class = [np.mean(hits) for hits in class_hits.values()]
    assert on_disk["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
    assert on_disk["per_class"] == {
        f"class_{c}": {"accuracy": pytest.approx(np.mean(hits)), "count": len(hits)}
        for c, hits in class_hits.items()
    }
    assert (run / "confusion.png").stat().st_size > 1000


def test_non_finite_scores_fail_and_leave_no_valid_looking_metrics(tested_run, tmp_path):
    cfg, model, _, _ = tested_run
    run = tmp_path / "run"
    path = run / "checkpoints" / "epoch_0001.pt"
    state = ckpt.load_checkpoint(path)
    ckpt.save_checkpoint({**state, "model": non_finite_in_eval(model)}, path)
    (run / "metrics.json").write_text('{"video_top1": 0.9}\n')  # from an earlier test
    (run / "predictions.csv").write_text("video,label\n")
    with pytest.raises(CheckpointError) as info:
        tester.test(cfg)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "non-finite scores (NaN/Inf) for 4 of 4 videos" in message
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "metrics.json.stale",
        "predictions.csv.stale",
    ]
    assert (run / "metrics.json.stale").read_text() == '{"video_top1": 0.9}\n'


def test_yuv420_batches_score_like_rgb_through_test_predict_and_training(tested_run, tmp_path):
    """data.decode_output=yuv420 end to end: the tester's view chunks, predict and a training
    epoch with validation take YuvClips batches and give the RGB path's scores (within the
    resampling tolerance of the device-side conversion)."""
    cfg, _, records, _ = tested_run
    rgb = tester.test(cfg)
    rgb_scores = np.load(tmp_path / "run" / "scores.npy")
    cfg.data.decode_output = "yuv420"
    yuv = tester.test(cfg)
    yuv_scores = np.load(tmp_path / "run" / "scores.npy")
    assert yuv["num_videos"] == rgb["num_videos"] == 4 and yuv["num_skipped"] == 1
    assert yuv_scores.shape == rgb_scores.shape == (4, 2)
    assert np.abs(yuv_scores - rgb_scores).max() < 0.05
    # predict runs with the config stored in the checkpoint: one that asks for yuv420
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_0001.pt")
    checkpoint = tmp_path / "yuv.pt"
    save_checkpoint(state | {"config": config_to_dict(cfg)}, checkpoint)
    [prediction] = inference.predict([records[0].path], str(checkpoint), topk=2, device="cpu")
    assert prediction.error == "" and len(prediction.labels) == 2
    assert sum(p for _, p in prediction.labels) == pytest.approx(1.0, abs=1e-5)
    # records[0] is the first scored video (the broken one is records[1])
    assert max(p for _, p in prediction.labels) == pytest.approx(yuv_scores[0].max(), abs=1e-4)

    from videoglore.engine.trainer import train

    videos = {"train": cfg.data.train_list, "val": cfg.data.val_list}
    result = train(
        tiny_config(
            videos, tmp_path / "yuv_run", data={"decode_output": "yuv420"}, train={"epochs": 1}
        )
    )
    assert result["epoch"] == 1 and math.isfinite(result["train_loss"])
    assert "val_top1" in result


def test_results_that_cannot_be_set_aside_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text("{}\n")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OutputError, match=rf"cannot write to {tmp_path}: .*EACCES.*metrics"):
        mark_stale(tmp_path)
