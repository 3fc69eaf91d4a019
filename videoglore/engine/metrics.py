"""Small pure functions for scores and accuracies, easy to check by hand.

Video-level testing follows the released code and the paper (§4.1): every view (temporal clip ×
spatial crop) is scored independently and the softmax scores are averaged per video.
"""

from __future__ import annotations

import numpy as np
import torch


def aggregate_views(logits: torch.Tensor, mode: str = "softmax") -> torch.Tensor:
    """Average the views of each video.

    Args:
        logits: (N, V, K) raw scores of V views per video.
        mode: "softmax" averages per-view probabilities (official), "logits" averages raw scores.

    Returns:
        (N, K) per-video scores (probabilities for "softmax", logits for "logits").
    """
    if logits.dim() != 3:
        raise ValueError(f"expected logits (N, V, K), got shape {tuple(logits.shape)}")
    logits = logits.float()
    if mode == "softmax":
        return logits.softmax(dim=-1).mean(dim=1)
    if mode == "logits":
        return logits.mean(dim=1)
    raise ValueError(f"aggregate mode must be 'softmax' or 'logits', got {mode!r}")


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: is the label among the ``k`` highest scores? (k is capped at K.)"""
    k = min(k, scores.shape[-1])
    top = scores.topk(k, dim=-1).indices  # (N, k)
    return (top == labels.view(-1, 1)).any(dim=-1)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction in [0, 1] of rows whose label is within the top ``k`` scores (0 when empty)."""
    if len(labels) == 0:
        return 0.0
    return topk_correct(scores, labels, k).float().mean().item()


def mean_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Top-1 accuracy averaged over the classes present in ``labels`` (each class weighs 1)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    per_class = [
        float((predictions[labels == c] == c).mean())
        for c in range(num_classes)
        if (labels == c).any()
    ]
    return float(np.mean(per_class)) if per_class else 0.0


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def top_confused_pairs(matrix: np.ndarray, n: int = 20) -> list[tuple[int, int, int]]:
    """The ``n`` largest off-diagonal cells as (true, predicted, count > 0), largest first."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:n]
    rows, cols = np.unravel_index(flat, off.shape)
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(rows, cols, strict=True)]
    return [p for p in pairs if p[2] > 0]
