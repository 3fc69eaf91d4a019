"""Multi-view testing (``test``) and single-file prediction (``predict``).

Protocol (paper §4.1, released ``test/``): K temporal clips × C spatial crops per video (10×3 by
default, 10×5 selectable), softmax scores averaged per video. Flow::

    test list ─ShardSampler (rank r: disjoint slice, no padding)─▶ batches of B videos
      views uint8 (B, V, 3, T, S, S) ─flatten─▶ (B*V, 3, T, S, S) ─chunks of max_views_per_forward─▶
      logits (B*V, K) ─▶ (B, V, K) ─aggregate_views─▶ per-video scores (B, K)
    every rank's (index, label, scores) ─all_gather_object─▶ rank 0 ─▶ metrics.json,
      predictions.csv, scores.npy, confusion.png

Unreadable videos are dropped by ``collate_test``, listed in ``metrics.json`` and counted.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_prep.lists import VideoRecord, read_classes, read_video_list
from videoglore.config import Config, config_from_dict
from videoglore.data import build_dataset, build_loader, normalize
from videoglore.data.video import open_video
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import (
    Runtime,
    amp_dtype,
    autocast,
    cleanup,
    gather_objects,
    setup_runtime,
)
from videoglore.engine.metrics import (
    aggregate_views,
    confusion_matrix,
    mean_class_accuracy,
    top_confused_pairs,
    topk_accuracy,
    topk_correct,
)
from videoglore.errors import CheckpointError, VideoError
from videoglore.models import build_model, load_weights

log = logging.getLogger(__name__)


def test(cfg: Config, checkpoint: str | None = None) -> dict:
    """Score every video of ``data.val_list``; rank 0 writes the outputs and returns the metrics.

    Returns {} on other ranks. Metric values are fractions in [0, 1].
    """
    rt = setup_runtime(cfg.train.device)
    try:
        return _test(cfg, checkpoint, rt)
    finally:
        cleanup(rt)


def _test(cfg: Config, checkpoint: str | None, rt: Runtime) -> dict:
    path = checkpoint or cfg.test.checkpoint or str(ckpt.find_checkpoint(cfg.output.dir))
    model, classes = _model_to_test(path, cfg, rt.device)
    dtype = amp_dtype(cfg.train.amp, rt.device)
    loader = build_loader(cfg, "test", distributed=rt.distributed, batch_size=cfg.test.batch_size)
    part = score_videos(model, loader, cfg, rt.device, dtype)
    parts = gather_objects(part, rt)
    if not rt.is_main:
        return {}
    records = read_video_list(cfg.data.val_list, root=cfg.data.root or None)
    run_dir = Path(cfg.output.dir)
    metrics = write_results(parts, records, classes, cfg, run_dir)
    metrics["checkpoint"] = str(path)
    log.info(
        "tested %d videos (%d skipped) from %s", metrics["num_videos"], metrics["num_skipped"], path
    )
    return {**metrics, "run_dir": str(run_dir)}


def _model_to_test(path: str, cfg: Config, device: torch.device) -> tuple[nn.Module, list[str]]:
    """Net and class names from our checkpoint, or else a released / bare weights file (e.g.
    GloRe's ``resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth``) loaded into the net of
    ``cfg.model``, with the class list of ``cfg.data`` (released label order: prepare's
    kinetics400 list)."""
    try:
        model, classes, _ = load_model_from_checkpoint(path, device)
        return model, classes
    except CheckpointError:
        pass  # not one of ours
    model = build_model(dataclasses.replace(cfg.model, pretrained="", weights=""))
    load_weights(model, path)  # CheckpointError naming the file when it does not fit
    model.to(device).eval()
    listed = cfg.data.classes or str(Path(cfg.data.val_list).parent / "classes.json")
    if Path(listed).is_file():
        return model, read_classes(listed)
    return model, [str(i) for i in range(model.num_classes)]


@torch.no_grad()
def score_videos(model: nn.Module, loader, cfg: Config, device: torch.device, dtype=None) -> dict:
    """This rank's per-video scores and clip-level hit counts (plain data, for gathering)."""
    model.eval()
    max_views = max(1, cfg.test.max_views_per_forward)
    indices, labels, scores, skipped = [], [], [], []
    clip_hits = {"top1": 0, "top5": 0, "count": 0}
    for views, batch_labels, batch_indices, batch_skipped in loader:
        skipped.extend(batch_skipped)
        if batch_labels.numel() == 0:
            continue
        B, V = views.shape[:2]  # views (B, V, 3, T, S, S)
        flat = views.flatten(0, 1)  # (B*V, 3, T, S, S)
        logits = torch.cat(
            [_forward(model, chunk, cfg, device, dtype) for chunk in flat.split(max_views)]
        )  # (B*V, K)
        view_labels = batch_labels.repeat_interleave(V)
        clip_hits["top1"] += int(topk_correct(logits, view_labels, 1).sum())
        clip_hits["top5"] += int(topk_correct(logits, view_labels, 5).sum())
        clip_hits["count"] += B * V
        scores.append(aggregate_views(logits.view(B, V, -1), cfg.test.aggregate).numpy())
        indices.extend(batch_indices.tolist())
        labels.extend(batch_labels.tolist())
    k = getattr(model, "num_classes", 0)
    return {
        "indices": indices,
        "labels": labels,
        "scores": np.concatenate(scores) if scores else np.zeros((0, k), np.float32),
        "skipped": [int(i) for i in skipped],
        "clip": clip_hits,
    }


def _forward(model, chunk: torch.Tensor, cfg: Config, device, dtype) -> torch.Tensor:
    x = normalize(chunk.to(device, non_blocking=True), cfg.data.normalization)
    with autocast(dtype, device):
        return model(x).float().cpu()  # (n, K)


def write_results(
    parts: list[dict], records: list[VideoRecord], classes: list[str], cfg: Config, run_dir: Path
) -> dict:
    """Merge the ranks' parts (in list order) and write metrics.json, predictions.csv, scores.npy
    (if ``test.save_scores``) and confusion.png; returns the metrics."""
    order = np.array([i for p in parts for i in p["indices"]], dtype=np.int64)
    labels = torch.tensor([y for p in parts for y in p["labels"]], dtype=torch.int64)
    scores = torch.from_numpy(np.concatenate([p["scores"] for p in parts]).astype(np.float32))
    sort = np.argsort(order, kind="stable")
    order, labels, scores = order[sort], labels[sort], scores[sort]
    skipped = sorted(i for p in parts for i in p["skipped"])
    clip = {k: sum(p["clip"][k] for p in parts) for k in ("top1", "top5", "count")}
    preds = scores.argmax(dim=1).numpy() if len(order) else np.zeros(0, np.int64)
    metrics = {
        "num_videos": int(len(order)),
        "num_skipped": len(skipped),
        "video_top1": topk_accuracy(scores, labels, 1),
        "video_top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(preds, labels.numpy(), len(classes)),
        "clip_top1": clip["top1"] / max(clip["count"], 1),
        "clip_top5": clip["top5"] / max(clip["count"], 1),
        "num_clips": cfg.test.num_clips,
        "num_crops": cfg.test.num_crops,
        "aggregate": cfg.test.aggregate,
        "skipped": [records[i].path for i in skipped],
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "metrics.json", metrics)
    _write_predictions(run_dir / "predictions.csv", order, labels, scores, records, classes)
    if cfg.test.save_scores:
        np.save(run_dir / "scores.npy", scores.numpy())
        (run_dir / "scores_order.txt").write_text("".join(records[i].path + "\n" for i in order))
    matrix = confusion_matrix(preds, labels.numpy(), len(classes))
    plot_confusions(matrix, classes, run_dir / "confusion.png")
    return metrics


def _write_predictions(path, order, labels, scores, records, classes, topk: int = 5) -> None:
    k = min(topk, scores.shape[1]) if scores.ndim == 2 else 0
    header = ["video", "label"] + [f"{kind}{r}" for r in range(1, k + 1) for kind in ("top", "p")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row, index in enumerate(order):
            top = scores[row].topk(k)
            cells = []
            for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                cells += [classes[c], f"{p:.4f}"]
            writer.writerow([records[index].path, classes[int(labels[row])], *cells])


def plot_confusions(matrix: np.ndarray, classes: list[str], path: Path, n: int = 20) -> None:
    """Horizontal bars of the ``n`` most frequent (true → predicted) mistakes; readable for 400
    classes where a full matrix is not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = top_confused_pairs(matrix, n)
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(pairs), 3) + 1.2))
    if pairs:
        names = [f"{classes[t]} → {classes[p]}" for t, p, _ in reversed(pairs)]
        ax.barh(names, [c for _, _, c in reversed(pairs)], color="tab:red")
        ax.set_xlabel("videos")
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"most confused class pairs, true → predicted ({len(pairs)} shown)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def load_model_from_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, list[str], Config]:
    """Rebuild the network from the config stored in a checkpoint and load its weights."""
    state = ckpt.load_checkpoint(path)
    cfg = config_from_dict(state["config"], source=f"{path}:config")
    # The weights come from the checkpoint itself; do not re-read the files used at train time.
    model_cfg = dataclasses.replace(cfg.model, pretrained="", weights="")
    model = build_model(model_cfg)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    classes = state.get("classes") or [str(i) for i in range(model.num_classes)]
    return model, classes, cfg


@torch.no_grad()
def predict(
    videos: list[str], checkpoint: str, topk: int = 5, device: str = "auto"
) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-``topk`` (label, probability) per video file, with the checkpoint's test settings.

    Raises:
        VideoError: naming the first file that cannot be opened or decoded.
        CheckpointError: the checkpoint is missing or corrupt.
    """
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    model, classes, cfg = load_model_from_checkpoint(checkpoint, dev)
    records = [_probe(video) for video in videos]
    dataset = build_dataset(cfg, "test", records=records)
    results = []
    for i, video in enumerate(videos):
        views, _, _ = dataset[i]  # uint8 (V, 3, T, S, S) or None
        if views is None:
            raise VideoError(f"{video}: cannot decode the frames needed for testing")
        logits = torch.cat(
            [
                _forward(model, chunk, cfg, dev, None)
                for chunk in views.split(max(1, cfg.test.max_views_per_forward))
            ]
        )  # (V, K)
        probs = aggregate_views(logits[None], "softmax")[0]  # (K,)
        top = probs.topk(min(topk, len(probs)))
        names = [classes[c] for c in top.indices.tolist()]
        results.append((video, list(zip(names, top.values.tolist(), strict=True))))
    return results


def _probe(video: str) -> VideoRecord:
    reader = open_video(video)  # VideoError naming the file
    height, width = reader[0].shape[:2]
    return VideoRecord(str(video), 0, "", len(reader), float(reader.get_avg_fps()), width, height)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
