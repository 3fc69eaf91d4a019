"""The files a test writes into the run directory, each atomically (``data_prep.files``):

    metrics.json       video and clip top-1/top-5, mean class accuracy, counts, skipped videos,
                       the checkpoint tested
    predictions.csv    per video: path, true label, top-5 labels with probabilities
    scores.npy         (N, K) per-video scores, rows in the order of scores_order.txt
                       (``test.save_scores``, for ensembling)
    confusion.png      the most confused class pairs

A test that fails on non-finite scores writes none of them and renames those of an earlier test
to ``NAME.stale`` (``mark_stale``), so that no file in the folder looks like its result.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from data_prep.files import as_output_error, atomic_open, atomic_write_text, write_json
from data_prep.lists import VideoRecord
from videoglore.engine.metrics import confusion_matrix
from videoglore.engine.plots import plot_confusions
from videoglore.engine.scoring import TestScores

RESULT_FILES = (
    "metrics.json",
    "predictions.csv",
    "scores.npy",
    "scores_order.txt",
    "confusion.png",
)


def write_results(
    run_dir: Path,
    metrics: dict,
    merged: TestScores,
    records: list[VideoRecord],
    classes: list[str],
    save_scores: bool,
) -> None:
    """Write metrics.json, predictions.csv, scores.npy + scores_order.txt (if ``save_scores``)
    and confusion.png."""
    write_json(run_dir / "metrics.json", metrics)
    write_predictions(run_dir / "predictions.csv", merged, records, classes)
    if save_scores:
        with atomic_open(run_dir / "scores.npy", "wb") as f:
            np.save(f, merged.scores.numpy())
        order = "".join(records[i].path + "\n" for i in merged.order)
        atomic_write_text(run_dir / "scores_order.txt", order)
    matrix = confusion_matrix(merged.predictions, merged.labels.numpy(), len(classes))
    plot_confusions(matrix, classes, run_dir / "confusion.png")


def write_predictions(
    path: Path, merged: TestScores, records: list[VideoRecord], classes: list[str], topk: int = 5
) -> None:
    """predictions.csv: video, label, then (top1, p1), (top2, p2), ... best first."""
    scores = merged.scores
    k = min(topk, scores.shape[1]) if scores.ndim == 2 else 0
    header = ["video", "label"] + [f"{kind}{r}" for r in range(1, k + 1) for kind in ("top", "p")]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row, index in enumerate(merged.order):
            top = scores[row].topk(k)
            cells = []
            for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                cells += [classes[c], f"{p:.4f}"]
            writer.writerow([records[index].path, classes[int(merged.labels[row])], *cells])


def mark_stale(run_dir: Path) -> list[str]:
    """Rename the result files of an earlier test to NAME.stale (kept, but never mistaken for
    the results of a test that failed); returns the names renamed.

    Raises:
        OutputError: a file cannot be renamed (one line naming the folder and the cause).
    """
    renamed = []
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            with as_output_error(run_dir / name):
                os.replace(run_dir / name, run_dir / f"{name}.stale")
            renamed.append(name)
    return renamed
