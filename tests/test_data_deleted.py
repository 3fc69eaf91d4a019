"""A list row whose video was deleted after ``prepare`` (issue 17, "go further"): training
replaces it and says so once, validation and testing count it, testing lists it in
metrics.json, predict reports it in one line; every message names the file."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.codec import write_video
from data_prep.lists import read_video_list
from data_prep.options import PrepareOptions
from data_prep.prepare import prepare
from tests.helpers import tiny_config
from videoglore.cli import main
from videoglore.engine import tester
from videoglore.engine.run_log import read_log
from videoglore.engine.trainer import train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """``prepare`` of 2 classes × (4 train + 2 val) tiny videos, then one video of each split
    deleted from the prepared folder; returns the lists and the deleted paths."""
    root = tmp_path_factory.mktemp("deleted")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for label in range(2):
            for n in range(count):
                frames = np.full((16, 32, 32, 3), 60 + 120 * label, np.uint8)
                col = int(rng.integers(0, 24))
                frames[:, 8:16, col : col + 8] = 250
                write_video(root / "src" / split / f"class_{label}" / f"{n}.mp4", frames)
    out = root / "out"
    folders = {split: str(root / "src" / split) for split in ("train", "val")}
    prepare(PrepareOptions(str(out), folders=folders, short_side=32, workers=1))
    gone = {split: read_video_list(out / f"{split}.csv")[1].path for split in ("train", "val")}
    for path in gone.values():
        Path(path).unlink()
    return {"train": out / "train.csv", "val": out / "val.csv", "root": out}, gone


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """One epoch of training on those lists (validation included); returns the config and the
    warnings of the dataset."""
    videos, _ = prepared
    cfg = tiny_config(videos, tmp_path_factory.mktemp("run"), train={"epochs": 1})
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("videoglore.data.dataset")
    logger.addHandler(handler)
    try:
        torch.manual_seed(0)
        train(cfg)
    finally:
        logger.removeHandler(handler)
    return cfg, [r.getMessage() for r in records]


def test_training_replaces_it_and_validation_counts_it(prepared, trained):
    _, gone = prepared
    cfg, warnings = trained
    assert warnings == [
        f"unreadable video (replaced by another video): {gone['train']}: file not found",
        f"unreadable video (skipped): {gone['val']}: file not found",
    ]
    (epoch,) = [r for r in read_log(Path(cfg.output.dir) / "log.jsonl") if r["kind"] == "epoch"]
    assert epoch["val_skipped"] == 1 and 0 <= epoch["val_top1"] <= 1


def test_testing_counts_and_lists_it(prepared, trained):
    videos, gone = prepared
    cfg, _ = trained
    metrics = tester.test(cfg)
    run = Path(cfg.output.dir)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["num_skipped"] == metrics["num_skipped"] == 1
    assert on_disk["skipped"] == [gone["val"]] and on_disk["num_videos"] == 3
    with open(run / "predictions.csv") as f:
        listed = [row["video"] for row in csv.DictReader(f)]
    val = [r.path for r in read_video_list(videos["val"])]
    assert listed == [path for path in val if path != gone["val"]]


def test_predict_reports_it_in_one_line(prepared, trained, capsys):
    videos, gone = prepared
    cfg, _ = trained
    checkpoint = str(Path(cfg.output.dir) / "checkpoints" / "best.pt")
    kept = read_video_list(videos["val"])[0].path
    capsys.readouterr()
    assert main(["predict", gone["val"], kept, "--checkpoint", checkpoint, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [f"error: {gone['val']}: file not found"]
    assert kept in captured.out and gone["val"] not in captured.out
