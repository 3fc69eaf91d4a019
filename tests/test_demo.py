"""End to end: the demo pipeline (generate → prepare → train → test) at an even smaller size."""

import csv
import json
from pathlib import Path

import pytest
import torch

from data_prep.lists import read_classes, read_video_list
from tests.helpers import REPO
from videoglore import demo
from videoglore.cli import main

TINY = [
    "train.epochs=1",
    "train.val_every=1",
    "model.width=0.0625",
    "data.num_frames=4",
    "data.crop_size=32",
    "data.train_scale=[32,36]",
    "data.test_scale=32",
    "data.num_workers=0",
    "test.num_clips=2",
]


def test_demo_writes_lists_checkpoints_metrics_and_predictions(tmp_path, capsys, monkeypatch):
    # the demo trains and tests with DEMO_THREADS torch threads whatever the caller uses
    threads_seen = []

    def counting(function):
        def wrapped(*args, **kwargs):
            threads_seen.append(torch.get_num_threads())
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(demo, "train", counting(demo.train))
    monkeypatch.setattr(demo, "test", counting(demo.test))
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    try:
        code = main(
            [
                "demo",
                "--out",
                str(out),
                "--videos-per-class",
                "3",
                "-c",
                str(REPO / "configs/demo.yaml"),
            ]
            + TINY
        )
        assert torch.get_num_threads() == 1  # restored
    finally:
        torch.set_num_threads(caller_threads)
    assert code == 0 and threads_seen == [demo.DEMO_THREADS, demo.DEMO_THREADS]
    printed = capsys.readouterr().out
    assert "video top-1:" in printed and str(out / "run" / "metrics.json") in printed

    # prepare wrote the lists the trainer read: 6 classes x (2 train + 1 val) videos
    classes = read_classes(out / "data" / "classes.json")
    assert classes == sorted(classes) and len(classes) == 6
    train = read_video_list(out / "data" / "train.csv")
    val = read_video_list(out / "data" / "val.csv")
    assert (len(train), len(val)) == (12, 6)
    assert all(Path(r.path).is_file() and r.num_frames == 32 for r in train + val)
    assert all(classes[r.label] == r.label_name for r in train + val)

    run = out / "run"
    assert (run / "config.yaml").is_file()
    assert list((run / "checkpoints").glob("*.pt"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_videos"] == 6 and metrics["num_skipped"] == 0
    assert (metrics["num_clips"], metrics["num_crops"]) == (2, 1)
    # One SGD step from scratch (12 videos < 2 batches of 8): the net gives every video the same
    # class, so top-1 is exactly chance (1 of 6 videos, one per class) and top-5 is 5 of 6.
    for key in ("video_top1", "clip_top1", "mean_class_accuracy"):
        assert metrics[key] == pytest.approx(1 / 6), key
    assert metrics["video_top5"] == pytest.approx(5 / 6)

    with (run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["video"]).name for r in rows) == sorted(Path(r.path).name for r in val)
    assert len({r["top1"] for r in rows}) == 1 and rows[0]["top1"] in classes
    # the metrics are those of the predictions file
    top5 = [r["label"] in [r[f"top{k}"] for k in range(1, 6)] for r in rows]
    assert metrics["video_top1"] == pytest.approx(sum(r["top1"] == r["label"] for r in rows) / 6)
    assert metrics["video_top5"] == pytest.approx(sum(top5) / 6)
