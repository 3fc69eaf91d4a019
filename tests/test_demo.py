"""End to end: the demo pipeline (generate → prepare → train → test) at an even smaller size."""

import csv
import json
from pathlib import Path

from data_prep.lists import read_classes, read_video_list
from tests.helpers import REPO
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


def test_demo_writes_lists_checkpoints_metrics_and_predictions(tmp_path, capsys):
    out = tmp_path / "demo"
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
    assert code == 0
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
    for key in ("video_top1", "video_top5", "clip_top1", "mean_class_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_videos"] == 6 and metrics["num_skipped"] == 0

    with (run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["video"]).name for r in rows) == sorted(Path(r.path).name for r in val)
    assert all(r["top1"] in classes for r in rows)
