"""Using a trained model: rebuild it from a checkpoint, and top-k labels for video files.

    files and folders ─find_videos (folders: every video under them)─▶ paths
      ─probe_video (data_prep)─▶ test views of the checkpoint's config (K clips × C crops)
      ─forward_views, softmax averaged over the views─▶ Prediction(video, top-k labels | error)

A file that cannot be read gives a ``Prediction`` with ``error`` set and the others go on; the
command line prints one line per failure and exits non-zero at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from data_prep.codec import probe_video
from data_prep.files import atomic_open, write_json
from data_prep.lists import VideoRecord
from data_prep.sources import VIDEO_EXTENSIONS
from videoglore.config import Config, RuntimeConfig, config_from_dict
from videoglore.data import build_dataset
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import select_device
from videoglore.engine.forward import FastPath, fast_path, forward_views, place_model
from videoglore.engine.metrics import aggregate_views
from videoglore.errors import ConfigError, DataError, VideoError
from videoglore.models import build_model

log = logging.getLogger(__name__)

OUTPUT_FORMATS = (".csv", ".json")


@dataclass
class Prediction:
    """The top-k labels of one video, best first, or why it has none."""

    video: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (label, probability)
    error: str = ""  # one line; "" when the video was scored


def load_model_from_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, list[str], Config]:
    """Rebuild the network from the config stored in a checkpoint and load its weights
    (in eval mode on ``device``).

    Raises:
        CheckpointError: the file is missing, unreadable, refused, not ours, or its weights do
            not fit the model its config describes.
    """
    model, classes, cfg = model_from_state(ckpt.load_checkpoint(path), path)
    model.to(device).eval()
    return model, classes, cfg


def model_from_state(state: dict, path: str | Path) -> tuple[nn.Module, list[str], Config]:
    """The network, class names and config of a loaded checkpoint of ours (``model`` and
    ``config`` entries), on the CPU; ``path`` names the file in messages."""
    cfg = config_from_dict(state["config"], source=f"{path}:config")
    # The weights come from the checkpoint itself; do not re-read the files used at train time.
    model = build_model(dataclasses.replace(cfg.model, pretrained="", weights=""))
    advice = "its weights do not match the model of its own config: was the file edited?"
    ckpt.load_model_state(model, state["model"], path, advice)
    classes = state.get("classes") or [str(i) for i in range(model.num_classes)]
    return model, classes, cfg


def find_videos(paths: Iterable[str | Path]) -> list[str]:
    """Files as given, folders replaced by the videos under them (recursively, by extension,
    sorted; hidden entries skipped). A path that does not exist is kept: it fails as a video.

    Raises:
        DataError: a folder holds no video.
    """
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(str(path))
            continue
        videos = sorted(_videos_under(path))
        if not videos:
            raise DataError(
                f"no videos found in {path} (extensions: {', '.join(VIDEO_EXTENSIONS)})"
            )
        found.extend(videos)
    return found


def _videos_under(folder: Path) -> Iterator[str]:
    suffixes = {f".{ext}" for ext in VIDEO_EXTENSIONS}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                yield str(Path(root) / name)


@torch.no_grad()
def predict(
    videos: list[str], checkpoint: str | Path, topk: int = 5, device: str = "auto"
) -> Iterator[Prediction]:
    """Top-``topk`` labels per video with the checkpoint's model, classes and test settings,
    yielded one video at a time (a bad file gives a Prediction with ``error``).

    Raises:
        ConfigError: ``topk`` < 1, before any work.
        CheckpointError: the checkpoint is missing, corrupt or refused.
    """
    if topk < 1:
        raise ConfigError(f"predict --topk must be >= 1, got {topk}")
    dev = select_device(device)
    model, classes, cfg = load_model_from_checkpoint(checkpoint, dev)
    # the defaults for this device (bf16 + channels_last_3d on CUDA), whatever the run trained with
    fast = fast_path(RuntimeConfig(), dev, training=False)
    place_model(model, dev, fast)
    for video in videos:
        try:
            probs = _video_scores(model, video, cfg, dev, fast)  # (K,)
        except VideoError as exc:
            yield Prediction(video, error=str(exc))
            continue
        top = probs.topk(min(topk, len(probs)))
        names = [classes[c] for c in top.indices.tolist()]
        yield Prediction(video, list(zip(names, top.values.tolist(), strict=True)))


def _video_scores(
    model: nn.Module, video: str, cfg: Config, device: torch.device, fast: FastPath
) -> torch.Tensor:
    info = probe_video(video)  # VideoError naming the file
    record = VideoRecord(str(video), 0, "", info.frame_count, info.fps, info.width, info.height)
    views = build_dataset(cfg, "test", records=[record]).eval_views(record)  # (V, 3, T, S, S)
    return view_scores(model, views, cfg, device, fast, video)


def view_scores(
    model: nn.Module, views, cfg: Config, device: torch.device, fast: FastPath, video: str
) -> torch.Tensor:
    """Class probabilities (K,) of test views (V, 3, T, S, S) or ``YuvClips`` of one video (or
    one window of it, engine/windows.py): softmax averaged over the views, as ``test`` does.

    Raises:
        VideoError: naming ``video`` when the model gives non-finite scores.
    """
    logits = forward_views(model, views, cfg, device, fast)  # (V, K)
    if not logits.isfinite().all():
        raise VideoError(f"{video}: the model gives non-finite scores (NaN/Inf) for this video")
    return aggregate_views(logits[None], "softmax")[0]  # (K,)


def check_output_path(path: str | Path | None) -> None:
    """Raise ConfigError before any work when ``path`` is not a .csv or .json file name."""
    if path is not None and Path(path).suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--out {path}: name a .csv or .json file for the predictions")


def write_predictions(path: str | Path, predictions: list[Prediction]) -> Path:
    """Write the predictions as CSV (video, error, top1, p1, ...) or JSON, atomically."""
    check_output_path(path)
    if Path(path).suffix.lower() == ".json":
        return write_json(path, [_as_json(p) for p in predictions])
    k = max((len(p.labels) for p in predictions), default=0)
    header = ["video", "error"] + [f"{kind}{r}" for r in range(1, k + 1) for kind in ("top", "p")]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in predictions:
            cells = [cell for name, prob in p.labels for cell in (name, f"{prob:.4f}")]
            writer.writerow([p.video, p.error, *cells, *[""] * (2 * k - len(cells))])
    return Path(path)


def _as_json(p: Prediction) -> dict:
    labels = [{"label": name, "probability": prob} for name, prob in p.labels]
    return {"video": p.video, "labels": labels, "error": p.error}
