"""Turn a video collection + annotations into clean, checked, re-encoded lists (run once).

Data flow::

    Kinetics CSV(s) + --root ┐                                    ┌ OUT/videos/<split>/<class>/
    plain lists (--list)     ├ locate ─ check ─ re-encode ─ verify ┤ OUT/{train,val}.csv
    class folders (--folder) ┘          (PyAV)  (libx264)  (decord) └ OUT/classes.json, skipped.csv

Every video is opened with PyAV (video stream, one decoded frame, count, fps, size), re-encoded
to a short side of 256 px with a keyframe every 8 frames (H.264, no audio, same fps), and
checked with decord, whose frame count goes in the list because decord is what the loader uses.
Missing, broken and too-short videos go to skipped.csv with the reason. Work runs in parallel
worker processes; each finished video is recorded in OUT/.prepare/results.jsonl, so an
interrupted run (Ctrl-C) resumes where it stopped when the same command is run again.

A failure to write (disk full, quota, permission, read-only file system, a file where a folder
should be) is never a property of a video: the run stops at once with one line naming the
folder and the cause, records nothing for the unfinished videos and leaves no partial file;
the same command, run again once the cause is fixed, finishes the dataset.

Examples:
  run.py prepare --out data/k400 --root /data/kinetics --csv train.csv validate.csv
  run.py prepare --out data/k400 --list train=train_list.txt --list val=val_list.txt \\
      --root /data/kinetics --classes kinetics400
  run.py prepare --out data/demo --folder train=videos/train --folder val=videos/val
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.encode import EncodeSettings, VideoTask
from data_prep.errors import ConfigError, DataError
from data_prep.files import as_output_error, atomic_open
from data_prep.lists import VideoRecord, write_classes, write_video_list
from data_prep.runner import ResultLedger, run_tasks
from data_prep.sources import (
    KINETICS400,
    VIDEO_EXTENSIONS,
    VideoEntry,
    canonical_names,
    class_folder,
    index_video_root,
    load_class_names,
    parse_split_path,
    path_component,
    read_class_folders,
    read_kinetics_csv,
    read_video_list_file,
)

log = logging.getLogger(__name__)

SKIP_REASONS = ("missing", "outside_root", "duplicate", "broken", "too_short")
COLUMNS = ("listed", "found", *SKIP_REASONS, "kept", "under_one_clip")  # of the summary table


@dataclass
class PrepareOptions:
    out_dir: str
    csv_files: list[str] = field(default_factory=list)  # official Kinetics annotation CSVs
    video_root: str | None = None  # searched for the CSV clips; base of relative list paths
    lists: dict[str, str] = field(default_factory=dict)  # split -> plain list file
    folders: dict[str, str] = field(default_factory=dict)  # split -> folder-per-class tree
    classes: str | None = None  # class list file or "kinetics400"; default: sorted labels
    reencode: bool = True
    short_side: int = 256
    keyframe_interval: int = 8
    crf: int = 23
    min_frames: int = 8  # fewer frames → skipped as too short
    clip_frames: int = 8  # T and τ of the training clip (data.num_frames, data.frame_interval):
    clip_interval: int = 8  # kept videos shorter than one clip are counted (they get looped)
    workers: int | None = None  # default os.cpu_count(); 1 = in this process
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    progress: bool = True  # tqdm bar with ETA


@dataclass
class SplitCounts:
    listed: int = 0  # annotations read
    found: int = 0  # a file exists
    missing: int = 0
    outside_root: int = 0  # list paths leading outside the video root: refused, never opened
    duplicate: int = 0  # same split + class + name as an earlier entry
    broken: int = 0
    too_short: int = 0
    kept: int = 0  # written to the list
    under_one_clip: int = 0  # kept, but shorter than one clip: the loaders loop their frames


@dataclass
class PrepareSummary:
    out_dir: str
    splits: dict[str, SplitCounts]
    num_classes: int
    processed: int  # videos checked (and re-encoded) by this run
    reused: int  # videos finished by an earlier run, not redone
    seconds: float
    clip_span: int = 57  # frames one clip covers, (T - 1) * τ + 1
    indexed_files: int = 0  # files found under --root (CSV input)
    index_seconds: float = 0.0

    def format(self) -> str:
        rows = [("split", *COLUMNS)]
        for split, counts in self.splits.items():
            rows.append((split, *(str(getattr(counts, c)) for c in COLUMNS)))
        widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
        lines = []
        for first, *numbers in rows:
            cells = [v.rjust(w) for v, w in zip(numbers, widths[1:], strict=True)]
            lines.append("  ".join([first.ljust(widths[0]), *cells]))
        short = sum(c.under_one_clip for c in self.splits.values())
        if short:
            lines.append(
                f"{short} kept videos are shorter than one clip of {self.clip_span} frames; "
                "training and testing loop their frames (see under_one_clip)"
            )
        lines.append(
            f"{self.num_classes} classes; {self.processed} videos processed, {self.reused} "
            f"reused from an earlier run, {self.seconds:.1f} s"
            + (f" ({self.processed / self.seconds:.1f} videos/s)" if self.processed else "")
        )
        if self.indexed_files:
            lines.append(f"indexed {self.indexed_files} files in {self.index_seconds:.2f} s")
        lines.append(f"lists, classes.json and skipped.csv in {self.out_dir}")
        return "\n".join(lines)


def prepare(options: PrepareOptions) -> PrepareSummary:
    """Locate, check and re-encode every annotated video; write lists, classes and skips."""
    start = time.perf_counter()
    _check_options(options)
    out = Path(options.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a folder (made if missing)")
    with as_output_error(out):
        out.mkdir(parents=True, exist_ok=True)
    out_abs = os.path.abspath(out)
    entries, indexed, index_seconds = _collect_entries(options, out)
    classes, label_of = _resolve_classes(entries, options.classes)
    settings = EncodeSettings(
        options.reencode, options.short_side, options.keyframe_interval, options.crf
    )
    state = out / ".prepare"
    tmp_dir = state / "tmp"
    with as_output_error(tmp_dir):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # partial files of an interrupted run
        tmp_dir.mkdir(parents=True)

    counts: dict[str, SplitCounts] = {}
    skipped: list[tuple[str, str, str]] = []  # (video, split, reason)
    planned: list[tuple[VideoEntry, str]] = []  # (entry, ledger key)
    seen: dict[str, str] = {}
    for entry in entries:
        c = counts.setdefault(entry.split, SplitCounts())
        c.listed += 1
        if entry.refused:
            c.outside_root += 1
            skipped.append((entry.key, entry.split, entry.refused))
            continue
        if entry.source is None:
            c.missing += 1
            skipped.append((entry.key, entry.split, "missing: no file found"))
            continue
        c.found += 1
        label, name = label_of(entry)
        key = f"videos/{entry.split}/{class_folder(name)}/{path_component(entry.name)}.mp4"
        if key in seen:
            c.duplicate += 1
            skipped.append((entry.key, entry.split, f"duplicate: same output as {seen[key]}"))
            continue
        seen[key] = entry.key
        planned.append((entry, key))

    ledger = ResultLedger(state / "results.jsonl", settings.signature())
    tasks, results = [], {}
    for entry, key in planned:
        # abspath, not resolve(): no syscalls per video (resolve() cost 60 s for 260k videos)
        output = os.path.join(out_abs, key) if settings.reencode else None
        task = VideoTask(key, os.path.abspath(entry.source), output, str(tmp_dir), settings)
        done = ledger.finished(task)
        if done is not None:
            results[key] = done
        else:
            tasks.append(task)
    reused = len(results)
    log.info("%d videos to process, %d finished earlier", len(tasks), reused)
    try:
        for result in run_tasks(tasks, options.workers, options.progress):
            results[result.key] = result
            ledger.append(result)
    finally:
        ledger.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)

    records: dict[str, list[VideoRecord]] = {split: [] for split in counts}
    for entry, key in planned:
        result, c = results[key], counts[entry.split]
        label, name = label_of(entry)
        if result.status != "ok":
            c.broken += 1
            skipped.append((entry.key, entry.split, f"broken: {result.reason}"))
        elif result.num_frames < options.min_frames:
            c.too_short += 1
            reason = f"too_short: {result.num_frames} frames < {options.min_frames}"
            skipped.append((entry.key, entry.split, reason))
        else:
            c.kept += 1
            c.under_one_clip += result.num_frames < clip_span(options)
            path = key if settings.reencode else _list_path(result.source, out_abs)
            records[entry.split].append(
                VideoRecord(
                    path,
                    label,
                    name,
                    result.num_frames,
                    round(result.fps, 4),
                    result.width,
                    result.height,
                )
            )
    for split, split_records in records.items():
        split_records.sort(key=lambda r: (r.label, r.path))
        write_video_list(out / f"{split}.csv", split_records)
    write_classes(out / "classes.json", classes)
    _write_skipped(out / "skipped.csv", sorted(skipped, key=lambda s: (s[1], s[0])))
    if tasks or set(ledger.records) != set(seen):  # drop superseded and stale lines
        ledger.compact(set(seen))
    return PrepareSummary(
        str(out),
        counts,
        len(classes),
        len(tasks),
        reused,
        time.perf_counter() - start,
        clip_span(options),
        indexed,
        index_seconds,
    )


def clip_span(options: PrepareOptions) -> int:
    """Frames one training clip covers: ``(T - 1) * τ + 1`` (57 for the 8x8 recipes)."""
    return (options.clip_frames - 1) * options.clip_interval + 1


# --------------------------------------------------------------------------- inputs


def _check_options(options: PrepareOptions) -> None:
    lows = {"short_side": 2, "keyframe_interval": 1, "min_frames": 1, "crf": 0}
    lows |= {"clip_frames": 1, "clip_interval": 1}
    for name, low in lows.items():
        if getattr(options, name) < low:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be at least {low}, got {getattr(options, name)}")


def _collect_entries(options: PrepareOptions, out: Path) -> tuple[list[VideoEntry], int, float]:
    if not (options.csv_files or options.lists or options.folders):
        raise DataError("nothing to prepare: give --csv (with --root), --list or --folder")
    entries: list[VideoEntry] = []
    indexed, index_seconds = 0, 0.0
    if options.csv_files:
        if not options.video_root:
            raise DataError("--csv needs --root, the folder that holds the downloaded videos")
        start = time.perf_counter()
        index = index_video_root(options.video_root, options.extensions, exclude=out)
        index_seconds = time.perf_counter() - start
        indexed = sum(len(paths) for paths in index.values())
        log.info(
            "indexed %d video files under %s in %.2f s", indexed, options.video_root, index_seconds
        )
        for path in options.csv_files:
            entries += read_kinetics_csv(path, index, options.extensions)
    for split, path in options.lists.items():
        entries += read_video_list_file(path, split, options.video_root, options.extensions)
    for split, folder in options.folders.items():
        entries += read_class_folders(folder, split, options.extensions)
    return entries, indexed, index_seconds


def _resolve_classes(entries: list[VideoEntry], spec: str | None):
    """Class list and an ``entry -> (index, name)`` function.

    Order: the ``--classes`` list when given; else the indices of an index-labelled list; else
    sorted label names (for Kinetics-400 this is the standard order of classes.txt).
    """
    known = load_class_names(spec) if spec else None
    index_labels = sorted({e.label for e in entries if isinstance(e.label, int)})
    if index_labels and known is None:
        known = _names_from_folders(entries)
    if known is not None and index_labels and index_labels[-1] >= len(known):
        raise DataError(f"label index {index_labels[-1]} is out of range for {len(known)} classes")
    names = {e.label for e in entries if isinstance(e.label, str)}
    mapping = canonical_names(names, known)
    classes = known if known is not None else sorted(set(mapping.values()))
    position = {name: i for i, name in enumerate(classes)}

    def label_of(entry: VideoEntry) -> tuple[int, str]:
        if isinstance(entry.label, int):
            return entry.label, classes[entry.label]
        name = mapping[entry.label]
        return position[name], name

    return classes, label_of


def _names_from_folders(entries: list[VideoEntry]) -> list[str]:
    """Name index labels after the class folder holding their videos (released lists store
    ``class_name/clip.mp4``), e.g. index 1 → ``air_drumming`` → ``air drumming``."""
    folders: dict[int, set[str]] = {}
    for e in entries:
        if isinstance(e.label, int):
            folders.setdefault(e.label, set()).add(Path(e.key).parent.name)
    bad = [i for i, f in folders.items() if len(f) != 1 or "" in f]
    gaps = sorted(set(range(max(folders) + 1)) - set(folders))
    if bad or gaps:
        raise DataError(
            "the list labels videos by index but the class names cannot be read from the "
            f"folders (index {(bad or gaps)[0]}: {'no videos' if not bad else 'mixed folders'}); "
            f"give the names with --classes FILE (or --classes {KINETICS400})"
        )
    raw = [next(iter(folders[i])) for i in range(len(folders))]
    mapping = canonical_names(set(raw), None)
    return [mapping[n] for n in raw]


def _list_path(source: str, out_abs: str) -> str:
    """Original file in the list: relative when it lies inside OUT, else absolute."""
    if source.startswith(out_abs + os.sep):
        return Path(os.path.relpath(source, out_abs)).as_posix()
    return source


def _write_skipped(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("video", "split", "reason"))
        writer.writerows(rows)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("inputs (any mix)")
    inputs.add_argument(
        "--csv",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        dest="csv_files",
        help="official Kinetics annotation CSV(s) "
        "(label,youtube_id,time_start,time_end,split[,is_cc]); clips are found by "
        "file name anywhere under --root (a file name starting with '-' must be "
        "written --csv=FILE)",
    )
    inputs.add_argument(
        "--root",
        dest="video_root",
        metavar="DIR",
        help="folder with the downloaded videos, any layout (searched "
        "recursively for --csv; base of the relative paths in --list, default: "
        "the list's folder)",
    )
    inputs.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="SPLIT=FILE",
        dest="lists",
        help="plain list, one 'relative/path label' per line "
        "(label = class name or index) or the released GloRe format 'id label "
        "relative/path'; repeat per split, e.g. --list train=train.txt",
    )
    inputs.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="SPLIT=DIR",
        dest="folders",
        help="folder-per-class tree DIR/<class>/<video>; repeat "
        "per split, e.g. --folder train=videos/train --folder val=videos/val",
    )
    inputs.add_argument(
        "--classes",
        metavar="FILE",
        help="class names in index order: a .txt (one a line), a .json list, or "
        f"'{KINETICS400}' (bundled standard list). Default: sorted label names",
    )
    parser.add_argument(
        "--out",
        required=True,
        dest="out_dir",
        metavar="DIR",
        help="output folder: train.csv, val.csv, classes.json, skipped.csv, videos/",
    )
    enc = parser.add_argument_group("checking and re-encoding")
    enc.add_argument(
        "--no-reencode",
        dest="reencode",
        action="store_false",
        help="keep the original files (lists point to them); videos are still "
        "checked with PyAV and decord",
    )
    enc.add_argument(
        "--short-side",
        type=int,
        default=256,
        help="shorter side of the re-encoded videos in pixels, never upscaled (default 256)",
    )
    enc.add_argument(
        "--keyframe-interval",
        type=int,
        default=8,
        metavar="FRAMES",
        help="frames between keyframes (default 8). Training decodes one random "
        "clip per video and decoding must start at the keyframe before it, so a "
        "short interval bounds the wasted decoding per clip (x264's default is 250 "
        "frames); the price is somewhat larger files",
    )
    enc.add_argument(
        "--crf", type=int, default=23, help="x264 quality, lower = better and bigger (default 23)"
    )
    enc.add_argument(
        "--min-frames",
        type=int,
        default=8,
        help="videos with fewer frames are skipped as too short (default 8, the 8-frame clips "
        "of the GloRe recipes)",
    )
    clip = parser.add_argument_group(
        "clip length (counts only)",
        "Kept videos shorter than one training clip, (T - 1) x interval + 1 frames, are counted "
        "per split in the summary (under_one_clip): the loaders loop their frames. Give the "
        "recipe's data.num_frames and data.frame_interval.",
    )
    clip.add_argument(
        "--clip-frames", type=int, default=8, metavar="T", help="frames per clip (default 8)"
    )
    clip.add_argument(
        "--clip-interval",
        type=int,
        default=8,
        metavar="TAU",
        help="stride between sampled frames (default 8: one clip spans 57 frames)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"worker processes (default: all {os.cpu_count()} cores)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    return PrepareOptions(
        out_dir=args.out_dir,
        csv_files=list(args.csv_files),
        video_root=args.video_root,
        lists=dict(parse_split_path(v) for v in args.lists),
        folders=dict(parse_split_path(v) for v in args.folders),
        classes=args.classes,
        reencode=args.reencode,
        short_side=args.short_side,
        keyframe_interval=args.keyframe_interval,
        crf=args.crf,
        min_frames=args.min_frames,
        clip_frames=args.clip_frames,
        clip_interval=args.clip_interval,
        workers=args.workers,
        progress=args.progress,
    )
