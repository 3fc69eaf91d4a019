"""Read the three kinds of input and locate each video on disk.

Inputs (any mix; every one yields :class:`VideoEntry` objects)::

    Kinetics CSV  label,youtube_id,time_start,time_end,split[,is_cc]  + a video root
    plain list    relative/path label           (label = class name or index)
                  id label relative/path        (list format released with the GloRe code)
    folder tree   DIR/<class>/**/<video>

(The split files of UCF101, HMDB51 and SSv2 are read in :mod:`data_prep.datasets`, which
gathers every input of a run; class names are resolved in :mod:`data_prep.classes`.)

For the CSV, clips are found by file name (``{youtube_id}_{start:06d}_{end:06d}.{ext}``, else
``{youtube_id}.{ext}``) anywhere under the root, because downloaders lay folders out differently
(label folders with spaces or underscores, split folders, flat). The root is walked once with
``os.scandir`` into a dict keyed by file stem, so 260k files cost one directory walk, not 260k
globs. Ids are never split on ``_`` or ``-``: YouTube ids contain both and may start with ``-``.

Paths in a plain list are untrusted text: one that leads outside the video root (``../``, an
absolute path elsewhere) is refused, reported in skipped.csv and never opened. The check is
lexical (no syscall per entry): symbolic links inside the root are followed, since linking
videos in from another disk is a normal layout and whoever made the link controls the root.
Labels, file names and splits become output paths only through :func:`path_component`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import DataError
from data_prep.files import read_csv, read_utf8

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov", "m4v", "flv", "3gp", "mpg", "mpeg")
_SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val", "training": "train"}
_CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_PLAIN_NAME = re.compile(r"^\w[\w.-]*$")


@dataclass(frozen=True)
class VideoEntry:
    """One annotated video before checking: where it should be and what it shows."""

    split: str  # "train", "val", ...
    key: str  # how the input names it (clip id, list path, folder path); used in skipped.csv
    label: str | int  # class name, or an index into the class list (index-labelled lists)
    source: Path | None  # the file found on disk; None when missing or refused
    name: str  # output file stem, e.g. "{youtube_id}_{start:06d}_{end:06d}"
    refused: str = ""  # why the entry is never opened (a list path outside the video root)
    origin: str = ""  # "FILE:LINE" of the annotation, named in errors about it


def normalize_split(split: str) -> str:
    """``Validation`` → ``val``; a split names an output file (``OUT/<split>.csv``) and folder,
    so it must be a plain name."""
    split = split.strip().lower()
    split = _SPLIT_ALIASES.get(split, split)
    if not _PLAIN_NAME.match(split):
        raise DataError(
            f"split {split!r} is not a plain name (letters, digits, '_', '-', '.'; e.g. train, val)"
        )
    return split


def label_key(name: str) -> str:
    """Spelling-insensitive class key: 'Air_Drumming' and 'air drumming' are the same class."""
    return " ".join(name.replace("_", " ").lower().split())


def path_component(text: str) -> str:
    """``text`` as one safe file or folder name, changed as little as possible: path separators
    and NUL become ``_``, and a name that is empty, blank, ``.``, ``..`` or hidden gets a leading
    ``_``. Labels and file names come from annotation files: they must never climb out of the
    folder they are joined to."""
    name = re.sub(r"[/\\\0]", "_", text)
    return name if name.strip() and not name.startswith(".") else "_" + name


def class_folder(name: str) -> str:
    """Folder name for a class: spaces → underscores (as in the released lists), no slashes;
    always one path component (``..`` → ``_..``)."""
    return path_component(re.sub(r"[\s/\\]+", "_", name.strip()))


def parse_split_path(text: str) -> tuple[str, str]:
    """Parse a ``SPLIT=PATH`` command-line value."""
    split, sep, path = text.partition("=")
    if not sep or not split or not path:
        raise DataError(f"expected SPLIT=PATH (e.g. train=lists/train.txt), got {text!r}")
    return normalize_split(split), path


# --------------------------------------------------------------------------- file index


def index_video_root(
    root: str | Path,
    extensions=VIDEO_EXTENSIONS,
    exclude: Path | None = None,
    strict: bool = False,
) -> dict[str, list[Path]]:
    """Walk ``root`` once and return {file stem: [paths]} for files with a video extension.

    Hidden entries and ``exclude`` (the output folder, so our own outputs are never picked up)
    are skipped. Symlinked files are indexed, symlinked folders are not followed (no cycles). A
    folder that cannot be listed is a warning (a video root may hold a ``lost+found``; the
    videos listed under it are reported missing), or with ``strict`` a DataError: a class tree
    must not lose videos, or a whole class, without stopping.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: video root is not a folder")
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    exclude_str = os.path.realpath(exclude) if exclude is not None else None
    index: dict[str, list[Path]] = {}
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as exc:
            if strict:
                raise DataError(
                    f"{folder}: cannot list it ({exc.strerror or exc}); make it readable and "
                    "rerun (its videos would be left out)"
                ) from None
            log.warning("cannot list %s: %s", folder, exc)
            continue
        with it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if exclude_str is None or os.path.realpath(entry.path) != exclude_str:
                        stack.append(entry.path)
                    continue
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in suffixes:
                    index.setdefault(stem, []).append(Path(entry.path))
    return index


def pick_file(candidates: list[Path], label: str, extensions) -> Path:
    """Choose among files sharing a stem: a path under a folder named like the label, then the
    preferred extension, then the lexically first path (deterministic)."""
    if len(candidates) == 1:
        return candidates[0]
    want = label_key(label)
    rank = {"." + e.lower().lstrip("."): i for i, e in enumerate(extensions)}

    def order(p: Path):
        in_label = any(label_key(part) == want for part in p.parts[:-1])
        return (not in_label, rank.get(p.suffix.lower(), len(rank)), str(p))

    return min(candidates, key=order)


# --------------------------------------------------------------------------- Kinetics CSV


def read_kinetics_csv(
    path: str | Path, index: dict[str, list[Path]], extensions=VIDEO_EXTENSIONS
) -> list[VideoEntry]:
    """Read an official Kinetics annotation CSV and locate each clip in ``index``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation CSV not found")
    expected = f"{','.join(_CSV_COLUMNS)}[,is_cc]; unlabelled test CSVs cannot be prepared"
    rows = read_csv(path, _CSV_COLUMNS, "a Kinetics annotation CSV", expected)
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            youtube_id = row["youtube_id"].strip()
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            label, split = row["label"].strip(), normalize_split(row["split"])
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{path}:{line}: malformed row {row}") from None
        except DataError as exc:
            raise DataError(f"{path}:{line}: {exc}") from None
        if not youtube_id or not label:
            raise DataError(f"{path}:{line}: empty youtube_id or label")
        clip = f"{youtube_id}_{start:06d}_{end:06d}"
        found = index.get(clip) or index.get(youtube_id)
        source = pick_file(found, label, extensions) if found else None
        entries.append(VideoEntry(split, clip, label, source, clip, origin=f"{path}:{line}"))
    if not entries:
        raise DataError(f"{path}: no videos listed (only a header)")
    return entries


# --------------------------------------------------------------------------- plain lists

_INT = re.compile(r"^\d+$")


def _split_list_line(line: str, path_re: re.Pattern) -> tuple[str, str]:
    """(relative path, label text) from one list line; see :func:`read_plain_list`."""
    if "\t" in line:
        fields = [f.strip() for f in line.split("\t") if f.strip()]
        if len(fields) == 3 and _INT.match(fields[0]) and _INT.match(fields[1]):
            return fields[2], fields[1]
        if len(fields) == 2:
            return fields[0], fields[1]
    tokens = line.split()
    if len(tokens) >= 3 and _INT.match(tokens[0]) and _INT.match(tokens[1]):
        # released GloRe format: "id label relative/path" (the path may hold spaces)
        return line.split(None, 2)[2].strip(), tokens[1]
    match = path_re.match(line)
    if match:
        return match.group("path"), match.group("label").strip()
    if len(tokens) < 2:
        raise ValueError("expected 'relative/path label' or 'id label relative/path'")
    path, label = line.rsplit(None, 1)
    return path.strip(), label


def read_plain_list(
    path: str | Path, split: str, root: str | Path | None = None, extensions=VIDEO_EXTENSIONS
) -> list[VideoEntry]:
    """Read a plain list; paths are relative to ``root`` (default: the list's folder).

    Accepted lines: ``relative/path label`` (label = class name, may contain spaces, or index)
    and the released GloRe format ``id label relative/path``; tab-separated columns also work.
    Index labels stay ints here and are named later (see :func:`canonical_names`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    base = os.path.abspath(root if root else path.parent)
    exts = "|".join(re.escape(e.lstrip(".")) for e in extensions)
    path_re = re.compile(rf"^(?P<path>.+?\.(?:{exts}))\s+(?P<label>\S.*)$", re.IGNORECASE)
    entries = []
    for number, raw in enumerate(read_utf8(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rel, label = _split_list_line(line, path_re)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}: {line!r}") from None
        label = int(label) if _INT.match(label) else label
        # normpath, not resolve(): a lexical check, no syscalls (see the module docstring)
        source = os.path.normpath(os.path.join(base, rel))
        if not source.startswith(base + os.sep):
            reason = f"outside_root: resolves to {source}, outside the video root {base}"
            entries.append(VideoEntry(split, rel, label, None, "", reason, f"{path}:{number}"))
            continue
        found = Path(source) if os.path.isfile(source) else None
        entries.append(
            VideoEntry(split, rel, label, found, Path(rel).stem, origin=f"{path}:{number}")
        )
    if not entries:
        raise DataError(f"{path}: no videos listed")
    return entries


# --------------------------------------------------------------------------- folder per class


def read_class_folders(
    folder: str | Path, split: str, extensions=VIDEO_EXTENSIONS
) -> list[VideoEntry]:
    """``folder/<class>/**/<video>``: one class per sub-folder, videos found recursively."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: class folder tree not found")
    entries = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name[0] != "."):
        index = index_video_root(class_dir, extensions, strict=True)
        for stem in sorted(index):
            for source in sorted(index[stem]):
                rel = source.relative_to(folder).as_posix()
                entries.append(
                    VideoEntry(split, rel, class_dir.name, source, stem, origin=str(source))
                )
    if not entries:
        raise DataError(
            f"{folder}: no videos listed: no video files in its class sub-folders "
            f"({folder}/<class>/...)"
        )
    return entries
