"""Prepared dataset lists: the contract between ``data_prep`` (writer) and the loaders (reader).

A prepared split is a CSV file with a header::

    path,label,label_name,num_frames,fps,width,height,rotation

``path`` is relative to the list's folder (or absolute); ``label`` is the index into the class
list stored beside it as ``classes.json`` (a JSON list of names, position = index). The column
``num_frames`` (the video's length, as decord counts it) is ``VideoRecord.frame_count`` in code,
where ``num_frames`` is the clip length T of the config (``data.num_frames``). ``width`` and
``height`` are the upright size; ``rotation`` (optional, 0 when the column is absent) is the
quarter turn clockwise that makes the frames PyAV decodes upright (only ``--no-reencode`` lists
have other values than 0; decord 0.6 applies the display matrix itself).
"""

from __future__ import annotations

import csv
import json
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from data_prep.errors import DataError
from data_prep.files import atomic_open, read_csv, read_utf8, write_json


@dataclass(frozen=True)
class VideoRecord:
    path: str  # relative to the list's folder when written; absolute after read_video_list
    label: int
    label_name: str
    frame_count: int  # the video's length in frames (list column num_frames)
    fps: float
    width: int  # upright
    height: int
    rotation: int = 0  # degrees clockwise (0, 90, 180, 270) that turn PyAV's frames upright


RENAMED = {"frame_count": "num_frames"}  # VideoRecord field → list column, where they differ
LIST_COLUMNS = tuple(RENAMED.get(f.name, f.name) for f in fields(VideoRecord))
OPTIONAL_COLUMNS = ("rotation",)  # lists written before it read as 0


def clip_span(T: int, tau: int) -> int:
    """Source frames covered by a clip of ``T`` frames taken every ``tau``: ``(T - 1) * tau + 1``
    (57 for the 8x8 recipes). A listed video shorter than this is looped by the samplers, and
    ``prepare`` counts such videos per split."""
    return (T - 1) * tau + 1


def write_video_list(path: str | Path, records: list[VideoRecord]) -> None:
    """Write a prepared list atomically (temp file + rename)."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LIST_COLUMNS)
        writer.writerows(astuple(record) for record in records)


def read_video_list(path: str | Path, root: str | Path | None = None) -> list[VideoRecord]:
    """Read a prepared list; relative paths are resolved against ``root`` or the list's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found (run `run.py prepare` first)")
    base = Path(root) if root else path.parent
    expected = f"header {','.join(LIST_COLUMNS)}"
    required = [c for c in LIST_COLUMNS if c not in OPTIONAL_COLUMNS]
    rows = read_csv(path, required, "a prepared list", expected)
    records = []
    for line, row in enumerate(rows, start=2):
        try:
            record = VideoRecord(
                path=str(base / row["path"]),
                label=int(row["label"]),
                label_name=row["label_name"],
                frame_count=int(row[RENAMED["frame_count"]]),
                fps=float(row["fps"]),
                width=int(row["width"]),
                height=int(row["height"]),
                rotation=int(row.get("rotation") or 0),
            )
        except (TypeError, ValueError):  # a value that is not a number, a short row (None)
            raise DataError(f"{path}:{line}: malformed row {row}") from None
        records.append(record)
    return records


def write_classes(path: str | Path, names: list[str]) -> None:
    """Write the class index (a JSON list of names, position = label index) atomically."""
    write_json(path, list(names))


def read_classes(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        names = json.loads(read_utf8(path))
    except FileNotFoundError:
        raise DataError(f"{path}: class file not found (run `run.py prepare` first)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: expected a JSON list of class names")
    return names
