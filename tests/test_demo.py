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
from videoglore.engine.checkpoint import load_checkpoint
from videoglore.threads import torch_threads

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


def _run_demo(out: Path, caller_threads: int, *overrides: str) -> int:
    """``videoglore demo`` at the TINY size from a process using ``caller_threads`` threads."""
    with torch_threads(caller_threads):
        argv = ["demo", "--out", str(out), "--videos-per-class", "3"]
        code = main(argv + ["-c", str(REPO / "configs/demo.yaml"), *TINY, *overrides])
        assert torch.get_num_threads() == caller_threads  # the demo restores the caller's count
        return code


def test_demo_writes_lists_checkpoints_metrics_and_predictions_the_same_at_any_thread_count(
    tmp_path, monkeypatch, capsys
):
    """One run checked for its lists, checkpoints, metrics and predictions; then the README's
    claim: every run gives the same numbers. Train and test run with DEMO_THREADS torch threads
    whatever the caller uses (one thread rounds the weight gradients differently), so a rerun from
    a 3-thread process gives bit-identical weights and metrics."""
    threads_seen = []

    def counting(function):
        def wrapped(*args, **kwargs):
            threads_seen.append(torch.get_num_threads())
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(demo, "train", counting(demo.train))
    monkeypatch.setattr(demo, "test", counting(demo.test))
    out = tmp_path / "demo"
    assert _run_demo(out, 1) == 0
    printed = capsys.readouterr().out
    assert "video top-1:" in printed and str(out / "run" / "metrics.json") in printed
    _check_lists_and_run(out)

    assert _run_demo(out, 3, f"output.dir={out / 'rerun'}") == 0  # same videos, new run
    assert threads_seen == [demo.DEMO_THREADS] * 4
    runs = (out / "run", out / "rerun")
    where = {"run_dir", "checkpoint"}  # the only entries that name the run's own folder
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    first, again = ({k: v for k, v in m.items() if k not in where} for m in metrics)
    assert first == again
    first, again = (load_checkpoint(run / "checkpoints" / "best.pt")["model"] for run in runs)
    assert all(torch.equal(first[k], again[k]) for k in first)


def _check_lists_and_run(out: Path) -> None:
    """What one demo run wrote: lists, checkpoints, metrics that agree with the predictions."""
    # prepare wrote the lists the trainer read: 6 classes x (2 train + 1 val) videos
    classes = read_classes(out / "data" / "classes.json")
    assert classes == sorted(classes) and len(classes) == 6
    train = read_video_list(out / "data" / "train.csv")
    val = read_video_list(out / "data" / "val.csv")
    assert (len(train), len(val)) == (12, 6)
    assert all(Path(r.path).is_file() and r.frame_count == 32 for r in [*train, *val])
    assert all(classes[r.label] == r.label_name for r in [*train, *val])

    run = out / "run"
    assert (run / "config.yaml").is_file()
    assert list((run / "checkpoints").glob("*.pt"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_videos"] == 6 and metrics["num_skipped"] == 0
    assert (metrics["num_clips"], metrics["num_crops"]) == (2, 1)

    with (run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["video"]).name for r in rows) == sorted(Path(r.path).name for r in val)
    assert all(r["top1"] in classes for r in rows)
    # the metrics are those of the predictions: 6 videos, one per class, 2 clips each
    hits1 = sum(r["label"] == r["top1"] for r in rows)
    hits5 = sum(r["label"] in [r[f"top{k}"] for k in range(1, 6)] for r in rows)
    assert metrics["video_top1"] == pytest.approx(hits1 / 6)
    assert metrics["video_top5"] == pytest.approx(hits5 / 6)
    assert metrics["mean_class_accuracy"] == pytest.approx(hits1 / 6)
    assert metrics["clip_top1"] * 12 == pytest.approx(round(metrics["clip_top1"] * 12))
