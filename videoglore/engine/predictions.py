"""What ``predict`` reads and writes, whichever model scores the videos (a checkpoint through
torch, ``inference.predict``; an exported ONNX model without torch, ``onnx_predict.predict_onnx``):
the videos named by files and folders, one ``Prediction`` per video, the ``--out`` CSV or JSON.

Torch-free: ``predict --model FILE.onnx`` imports this module and never torch.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.files import atomic_open, check_writable, write_json
from data_prep.sources import VIDEO_EXTENSIONS
from videoglore.errors import ConfigError, DataError

OUTPUT_FORMATS = (".csv", ".json")


@dataclass
class Prediction:
    """The top-k labels of one video, best first, or why it has none."""

    video: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (label, probability)
    error: str = ""  # one line; "" when the video was scored


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


def check_output_path(path: str | Path | None) -> None:
    """Check ``--out`` before any work: a .csv or .json file name, not a folder; its folder is
    made and written to now (so that one that cannot be made or written fails before the
    predictions, not after).

    Raises:
        ConfigError: not a .csv/.json name, or a folder of that name is in the way.
        OutputError: the folder cannot be made or written (a file in the way, no permission,
            a read-only file system, ...).
    """
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--out {path}: name a .csv or .json file for the predictions")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; name a .csv or .json file inside it")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {path}: {parent} is a file, not a folder")
    check_writable(path)


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
