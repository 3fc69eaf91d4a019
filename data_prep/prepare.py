"""Turn a video collection + annotations into clean, checked, re-encoded lists (run once).

Data flow::

    Kinetics CSV(s) + --root ┐                                    ┌ OUT/videos/<split>/<class>/
    UCF101, HMDB51, SSv2     │                                    │ OUT/{train,val}.csv
    plain lists (--list)     ├ locate ─ check ─ re-encode ─ verify ┤ OUT/classes.json, skipped.csv
    class folders (--folder) ┘          (PyAV)  (libx264)  (decord) └ (UCF101/HMDB51: OUT/split{N}/)

Every video is opened with PyAV (video stream, one decoded frame, count, fps, size), re-encoded
to a short side of 256 px with every frame a keyframe (H.264, no audio, same fps; the fastest
to load, ~3x the disk of a keyframe every 8 frames: ``--keyframe-interval``), and
checked with decord: both readers of the loader (PyAV, the default, and decord) must read every
listed file, and decord is the stricter of the two, so its frame count goes in the list.
Missing, broken and too-short videos go to skipped.csv with the reason; so do sources that could
not be read (no permission, I/O error), as ``unreadable``: never remembered, the next run tries
them again. A source whose display matrix says it is shown turned is re-encoded upright.
Work runs in parallel worker processes; each finished video is recorded in
OUT/.prepare/results.jsonl, so an interrupted run (Ctrl-C) resumes where it stopped when the
same command is run again. A rerun with other encode settings stops before redoing finished
videos unless --reencode-changed. With ``--shard I/N`` N such runs on N machines share OUT,
each doing its part of the videos (:mod:`data_prep.shards`); the same command without
``--shard`` then writes the lists.

A failure to write (disk full, quota, permission, read-only file system, a file where a folder
should be) is never a property of a video: the run stops at once with one line naming the
folder and the cause, records nothing for the unfinished videos and leaves no partial file;
the same command, run again once the cause is fixed, finishes the dataset.

Examples:
  run.py prepare --out data/k400 --root /data/kinetics --csv train.csv validate.csv
  run.py prepare --out data/k400 --list train=train_list.txt --list val=val_list.txt \\
      --root /data/kinetics --classes kinetics400
  run.py prepare --out data/demo --folder train=videos/train --folder val=videos/val
  run.py prepare --out data/ucf101 --ucf101 ucfTrainTestlist --root UCF-101 --split 1
  run.py prepare --out data/k700 --root /data/k700 --csv train.csv val.csv --shard 3/16
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from data_prep.classes import load_class_names, resolve_classes
from data_prep.datasets import collect_entries
from data_prep.encode import EncodeSettings, VideoResult, process_video
from data_prep.errors import ConfigError
from data_prep.files import as_output_error, atomic_open
from data_prep.lists import VideoRecord, write_classes, write_video_list
from data_prep.options import SPLIT_DATASETS, PrepareOptions, add_arguments, options_from_args
from data_prep.runner import recheck_rotations, run_tasks
from data_prep.shards import (
    Ledgers,
    Shard,
    declare_settings,
    open_ledgers,
    run_locks,
    shard_folders,
    unfinished_shards,
)
from data_prep.sources import VideoEntry, class_folder, path_component

__all__ = [
    "PrepareOptions",
    "PrepareSummary",
    "SplitCounts",
    "add_arguments",
    "options_from_args",
    "prepare",
]

log = logging.getLogger(__name__)

SKIP_REASONS = ("missing", "outside_root", "duplicate", "broken", "unreadable", "too_short")
COLUMNS = ("listed", "found", *SKIP_REASONS, "kept", "under_one_clip")  # of the summary table


@dataclass
class SplitCounts:
    listed: int = 0  # annotations read
    found: int = 0  # a file exists
    missing: int = 0
    outside_root: int = 0  # list paths leading outside the video root: refused, never opened
    duplicate: int = 0  # same split + class + name as an earlier entry
    broken: int = 0  # read and found bad (remembered)
    unreadable: int = 0  # could not be read: permission, I/O error (tried again next run)
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
    lists_dir: str = ""  # where the lists went (OUT, or OUT/split{N})
    shard: str = ""  # "I/N" for a run of one shard, which writes no lists
    pending: int = 0  # planned videos without a result (--merge): in no list, not skipped
    unfinished: list[str] = field(default_factory=list)  # shards that had not done theirs

    def format(self) -> str:
        rows = [("split", *COLUMNS)]
        for split, counts in self.splits.items():
            rows.append((split, *(str(getattr(counts, c)) for c in COLUMNS)))
        widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
        lines = []
        for first, *numbers in rows:
            cells = [v.rjust(w) for v, w in zip(numbers, widths[1:], strict=True)]
            lines.append("  ".join([first.ljust(widths[0]), *cells]))
        unreadable = sum(c.unreadable for c in self.splits.values())
        if unreadable:
            what = "1 video" if unreadable == 1 else f"{unreadable} videos"
            lines.append(
                f"{what} could not be read (unreadable in skipped.csv), nothing is remembered: "
                "fix the cause (permission, disk, network) and rerun to add them"
            )
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
        lines += self._shard_lines()
        return "\n".join(lines)

    def _shard_lines(self) -> list[str]:
        if self.shard:
            return [
                f"shard {self.shard} is done and writes no lists: once every shard is done, run "
                "the same command without --shard (or with --merge) to write them"
            ]
        several = len(self.unfinished) > 1
        shards = f"shard{'s' if several else ''} {', '.join(self.unfinished)}"
        lines = []
        undone = f"unfinished, or some of {'their' if several else 'its'} videos could not be read"
        if self.pending:
            why = f" ({shards} {undone}: rerun {'them' if several else 'it'})"
            what = "1 video is" if self.pending == 1 else f"{self.pending} videos are"
            lines.append(
                f"{what} not prepared yet and in no list{why if self.unfinished else ''}; then "
                "--merge again, or run without --merge to do them here"
            )
        elif self.unfinished:
            lines.append(f"{shards} left videos undone ({undone}): this run did them")
        lines.append(f"lists, classes.json and skipped.csv in {self.lists_dir or self.out_dir}")
        return lines


def prepare(options: PrepareOptions) -> PrepareSummary:
    """Locate, check and re-encode every annotated video; write lists, classes and skips.

    With ``options.shard`` only that part of the videos is done and nothing is written but the
    videos and the shard's ledger; with ``options.merge`` no video is done and the lists hold
    what the ledgers of all runs record (:mod:`data_prep.shards`).

    Raises:
        ConfigError, DataError: bad options or inputs, before any video is touched.
        OutputError: something under OUT cannot be written, or another run holds it; the run
            stops and the same call resumes it once the cause is fixed.
    """
    start = time.perf_counter()
    options.check()
    out = Path(options.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; give a folder (made if missing)")
    found = collect_entries(options, out)  # bad inputs fail here, before OUT is made
    with as_output_error(out):
        out.mkdir(parents=True, exist_ok=True)
    known = found.classes
    if known is None and options.classes:
        known = load_class_names(options.classes, found.entries)
    classes, label_of = resolve_classes(found.entries, known)
    settings = options.encode_settings()
    tally = _Tally()
    planned = _plan(found.entries, label_of, tally, options.dataset in SPLIT_DATASETS)
    if options.shard is not None:
        planned, tally = _shard_part(planned, options.shard)
    with nullcontext() if options.merge else run_locks(out, options.shard):
        ledger = open_ledgers(out, options.shard, settings.signature())
        if not options.reencode_changed:
            _refuse_changed_settings(out, ledger)
        if options.shard is not None:
            declare_settings(out, options.shard, settings.signature())
        if options.merge:
            sources = {key: os.path.abspath(entry.source) for key, entry in planned.items()}
            results, processed = ledger.recorded(out, sources), 0
        else:
            results, processed = _check_videos(planned, ledger, settings, options)
        done = {key: entry for key, entry in planned.items() if key in results}
        records = _sort_results(done, results, label_of, tally, options)
        if options.shard is None:
            _write_lists(out, options.lists_folder, records, classes, tally)
        if (processed or ledger.adopted or ledger.upgraded) and not options.merge:
            ledger.compact()  # superseded lines dropped, other runs' records taken in
    return PrepareSummary(
        str(out),
        tally.counts,
        len(classes),
        processed,
        len(results) - processed,
        time.perf_counter() - start,
        options.clip_span,
        found.indexed,
        found.index_seconds,
        lists_dir=str(out / options.lists_folder),
        shard=str(options.shard or ""),
        pending=len(planned) - len(results),
        unfinished=unfinished_shards(ledger.missed, shard_folders(out)),
    )


def _write_lists(
    out: Path, folder: str, records: dict[str, list[VideoRecord]], classes: list[str], tally
) -> None:
    """``{split}.csv``, classes.json and skipped.csv in ``OUT/folder``; list paths relative to
    that folder (``../videos/...`` from ``split1/``), as :func:`read_video_list` reads them."""
    lists = out / folder
    for split in tally.counts:
        rows = sorted(records[split], key=_list_order)
        if folder:
            rows = [_relative(r, folder) for r in rows]
        write_video_list(lists / f"{split}.csv", rows)
    write_classes(lists / "classes.json", classes)
    _write_skipped(lists / "skipped.csv", sorted(tally.skipped, key=lambda s: (s[1], s[0])))


def _relative(record: VideoRecord, folder: str) -> VideoRecord:
    if os.path.isabs(record.path):
        return record
    return replace(record, path=Path(os.path.relpath(record.path, folder)).as_posix())


def _shard_part(planned: dict[str, VideoEntry], shard: Shard) -> tuple[dict, _Tally]:
    """The planned videos ``shard`` owns, and a tally of those alone (the shard's summary)."""
    part, tally = {}, _Tally()
    for key, entry in planned.items():
        if shard.owns(key):
            part[key] = entry
            counts = tally.split(entry.split)
            counts.listed, counts.found = counts.listed + 1, counts.found + 1
    return part, tally


_FLAGS = {"short_side": "--short-side", "keyframe_interval": "--keyframe-interval", "crf": "--crf"}


def _refuse_changed_settings(out: Path, ledger: Ledgers) -> None:
    """Stop before a rerun re-encodes videos finished with other settings (a forgotten flag, a
    changed default): that silently costs the hours the earlier run took."""
    earlier = ledger.other_settings()
    if not earlier:
        return
    settings, count = max(earlier.items(), key=lambda item: item[1])
    settings = dict(settings)
    if not settings.get("reencode", True) or not ledger.signature.get("reencode"):
        flags = "with --no-reencode" if not settings.get("reencode", True) else "without it"
        was, now = f"reencode={settings.get('reencode', True)}", flags
    else:
        changed = [k for k in settings if settings[k] != ledger.signature.get(k)]
        was = ", ".join(f"{k}={settings[k]}" for k in changed)
        flags = " ".join(f"{_FLAGS[k]} {settings[k]}" for k in changed if k in _FLAGS)
        now = f"with {flags or 'those settings'}"
    what = "1 video here was" if count == 1 else f"{count} videos here were"
    raise ConfigError(
        f"{out}: {what} prepared with {was}; rerun {now} to continue that run, or add "
        "--reencode-changed to re-encode them with this run's settings"
    )


class _Tally:
    """Per-split counts and the rows of skipped.csv, filled as the videos are sorted."""

    def __init__(self) -> None:
        self.counts: dict[str, SplitCounts] = {}
        self.skipped: list[tuple[str, str, str]] = []  # (video, split, reason)

    def split(self, name: str) -> SplitCounts:
        return self.counts.setdefault(name, SplitCounts())

    def skip(self, entry: VideoEntry, reason: str) -> None:
        """Count ``entry`` under its reason's category (``"broken: ..."`` → ``broken``)."""
        category = reason.partition(":")[0]
        counts = self.split(entry.split)
        setattr(counts, category, getattr(counts, category) + 1)
        self.skipped.append((entry.key, entry.split, reason))


def _plan(
    entries: list[VideoEntry], label_of, tally: _Tally, shared: bool = False
) -> dict[str, VideoEntry]:
    """Output key → entry for every video to check; refused, missing and duplicate entries
    are tallied as skipped. ``shared``: one video folder for all splits, ``videos/<class>/``
    (the splits of UCF101 and HMDB51 use the same videos), else ``videos/<split>/<class>/``."""
    planned: dict[str, VideoEntry] = {}
    for entry in entries:
        tally.split(entry.split).listed += 1
        if entry.refused:
            tally.skip(entry, entry.refused)
        elif entry.source is None:
            tally.skip(entry, "missing: no file found")
        else:
            tally.split(entry.split).found += 1
            name = label_of(entry)[1]
            folder = class_folder(name) if shared else f"{entry.split}/{class_folder(name)}"
            key = f"videos/{folder}/{path_component(entry.name)}.mp4"
            if key in planned:
                tally.skip(entry, f"duplicate: same output as {planned[key].key}")
            else:
                planned[key] = entry
    return planned


def _check_videos(
    planned: dict[str, VideoEntry],
    ledger: Ledgers,
    settings: EncodeSettings,
    options: PrepareOptions,
) -> tuple[dict[str, VideoResult], int]:
    """Results for every planned video (from the ledger, else checked now) and how many were
    checked now. Each new result is in the ledger before the next one arrives."""
    out_dir = os.path.abspath(options.out_dir)
    tmp_dir = str(ledger.path.parent / "tmp")  # this run's own (a shard's: in its folder)
    with as_output_error(tmp_dir):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # partial files of an interrupted run
        os.makedirs(tmp_dir)
    results, todo = {}, []
    for key, entry in planned.items():
        # abspath, not resolve(): no syscalls per video (resolve() cost 60 s for 260k videos)
        source = os.path.abspath(entry.source)
        done = ledger.finished(key, source)
        if done is not None:
            results[key] = done
        else:
            todo.append((key, source))
    todo += recheck_rotations(ledger, results, options.workers, options.progress)
    log.info("%d videos to process, %d finished earlier", len(todo), len(results))
    work = partial(process_video, settings=settings, out_dir=out_dir, tmp_dir=tmp_dir)
    try:
        # closing(): an error here (a full disk under the ledger) stops the pool before the
        # temp folder is removed, not whenever the generator is collected
        with closing(run_tasks(work, todo, options.workers, options.progress)) as finished:
            for result in finished:
                ledger.append(result)
                results[result.key] = result
    finally:
        ledger.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return results, len(todo)


def _sort_results(
    planned: dict[str, VideoEntry],
    results: dict[str, VideoResult],
    label_of,
    tally: _Tally,
    options: PrepareOptions,
) -> dict[str, list[VideoRecord]]:
    """The list records of every split: missing, broken, unreadable and too-short videos are
    tallied as skipped, the rest kept (and counted when shorter than one clip). Width and height
    are upright; ``rotation`` is the one the loaders apply (only with --no-reencode: re-encoded
    files are upright)."""
    out_dir = os.path.abspath(options.out_dir)
    records: dict[str, list[VideoRecord]] = {split: [] for split in tally.counts}
    for key, entry in planned.items():
        result, counts = results[key], tally.split(entry.split)
        if result.status in ("missing", "unreadable"):
            tally.skip(entry, f"{result.status}: {result.reason}")
        elif result.status != "ok":
            tally.skip(entry, f"broken: {result.reason}")
        elif result.frame_count < options.min_frames:
            tally.skip(entry, f"too_short: {result.frame_count} frames < {options.min_frames}")
        else:
            counts.kept += 1
            counts.under_one_clip += result.frame_count < options.clip_span
            label, name = label_of(entry)
            path = key if options.reencode else _list_path(result.source, out_dir)
            fps = round(result.fps, 4)
            rotation = 0 if options.reencode else result.rotation  # re-encoded: upright
            measured = (result.frame_count, fps, result.width, result.height)
            record = VideoRecord(path, label, name, *measured, rotation=rotation)
            records[entry.split].append(record)
    return records


# --------------------------------------------------------------------------- inputs


def _list_order(record: VideoRecord) -> tuple[int, str]:
    return record.label, record.path


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
