"""Multi-view scoring of a test list: per-video scores on each rank, merged, then the metrics.

Protocol (paper §4.1, released ``test/``): K temporal clips × C spatial crops per video (10×3 by
default, 10×5 selectable), softmax scores averaged per video::

    views uint8 (B, V, 3, T, S, S) ─flatten─▶ (B*V, 3, T, S, S) ─chunks of max_views_per_forward─▶
      forward_views ─▶ logits (B*V, K) ─▶ (B, V, K) ─aggregate_views─▶ per-video scores (B, K)

``score_videos`` returns plain data (lists, NumPy) so that ``all_gather_object`` can collect every
rank's part; ``merge_parts`` puts them back in list order and ``video_metrics`` computes the
numbers of metrics.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from data_prep.lists import VideoRecord
from videoglore.config import Config
from videoglore.engine.forward import FastPath, forward_views
from videoglore.engine.meter import progress_bar
from videoglore.engine.metrics import (
    aggregate_views,
    mean_class_accuracy,
    topk_accuracy,
    topk_correct,
)


@torch.no_grad()
def score_videos(
    model: nn.Module,
    loader,
    cfg: Config,
    device: torch.device,
    fast: FastPath,
    progress: bool = False,
) -> dict:
    """This rank's per-video scores, clip-level hit counts and the number of videos with
    non-finite scores (plain data, for gathering); ``progress``: a bar with the ETA of this
    rank's videos (rank 0)."""
    model.eval()
    indices, labels, scores, skipped = [], [], [], []
    clip_hits = {"top1": 0, "top5": 0, "count": 0}
    non_finite = 0  # videos with a NaN/Inf score in any view
    total = len(loader.sampler) if progress else 0  # videos of this rank
    with progress_bar(progress, total, "test", unit="video", leave=True) as bar:
        for views, batch_labels, batch_indices, batch_skipped in loader:
            skipped.extend(batch_skipped)
            if batch_labels.numel() == 0:
                bar.update(len(batch_skipped))
                continue
            B, V = views.shape[:2]  # views (B, V, 3, T, S, S)
            logits = forward_views(model, views.flatten(0, 1), cfg, device, fast)  # (B*V, K)
            view_labels = batch_labels.repeat_interleave(V)
            clip_hits["top1"] += int(topk_correct(logits, view_labels, 1).sum())
            clip_hits["top5"] += int(topk_correct(logits, view_labels, 5).sum())
            clip_hits["count"] += B * V
            non_finite += int((~logits.view(B, -1).isfinite().all(dim=1)).sum())
            scores.append(aggregate_views(logits.view(B, V, -1), cfg.test.aggregate).numpy())
            indices.extend(batch_indices.tolist())
            labels.extend(batch_labels.tolist())
            bar.update(B + len(batch_skipped))
    k = getattr(model, "num_classes", 0)
    return {
        "indices": indices,
        "labels": labels,
        "scores": np.concatenate(scores) if scores else np.zeros((0, k), np.float32),
        "skipped": [int(i) for i in skipped],
        "clip": clip_hits,
        "non_finite": non_finite,
    }


@dataclass
class TestScores:
    """Every rank's part of a test, merged in list order."""

    order: np.ndarray  # (N,) list indices of the scored videos, increasing
    labels: torch.Tensor  # (N,) int64
    scores: torch.Tensor  # (N, K) float32 per-video scores
    skipped: list[int]  # list indices of unreadable videos
    clip: dict[str, int]  # clip-level top1/top5 hits and view count
    non_finite: int  # videos with a NaN/Inf score

    @property
    def predictions(self) -> np.ndarray:
        """(N,) top-1 class per video."""
        return self.scores.argmax(dim=1).numpy() if len(self.order) else np.zeros(0, np.int64)


def merge_parts(parts: list[dict]) -> TestScores:
    """Concatenate the ranks' ``score_videos`` parts and sort them by list index."""
    order = np.array([i for p in parts for i in p["indices"]], dtype=np.int64)
    labels = torch.tensor([y for p in parts for y in p["labels"]], dtype=torch.int64)
    scores = torch.from_numpy(np.concatenate([p["scores"] for p in parts]).astype(np.float32))
    sort = np.argsort(order, kind="stable")
    return TestScores(
        order=order[sort],
        labels=labels[sort],
        scores=scores[sort],
        skipped=sorted(i for p in parts for i in p["skipped"]),
        clip={k: sum(p["clip"][k] for p in parts) for k in ("top1", "top5", "count")},
        non_finite=sum(p["non_finite"] for p in parts),
    )


def video_metrics(
    merged: TestScores, records: list[VideoRecord], classes: list[str], cfg: Config
) -> dict:
    """The numbers of metrics.json (accuracies are fractions in [0, 1]), ``per_class`` last."""
    clip_count = max(merged.clip["count"], 1)
    num_classes = len(classes)
    return {
        "num_videos": int(len(merged.order)),
        "num_skipped": len(merged.skipped),
        "video_top1": topk_accuracy(merged.scores, merged.labels, 1),
        "video_top5": topk_accuracy(merged.scores, merged.labels, 5),
        "mean_class_accuracy": mean_class_accuracy(
            merged.predictions, merged.labels.numpy(), num_classes
        ),
        "clip_top1": merged.clip["top1"] / clip_count,
        "clip_top5": merged.clip["top5"] / clip_count,
        "num_clips": cfg.test.num_clips,
        "num_crops": cfg.test.num_crops,
        "aggregate": cfg.test.aggregate,
        "skipped": [records[i].path for i in merged.skipped],
        "per_class": per_class_accuracy(merged.predictions, merged.labels.numpy(), classes),
    }


def per_class_accuracy(
    predictions: np.ndarray, labels: np.ndarray, classes: list[str]
) -> dict[str, dict]:
    """Class name → ``{"accuracy": video top-1 of its videos (None without any), "count":
    its videos}``, in class order (what ``mean_class_accuracy`` averages)."""
    count = np.bincount(labels, minlength=len(classes))
    right = np.bincount(labels[predictions == labels], minlength=len(classes))
    return {
        name: {"accuracy": float(right[c] / count[c]) if count[c] else None, "count": int(count[c])}
        for c, name in enumerate(classes)
    }
