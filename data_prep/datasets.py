"""Every input of a run → video entries (:func:`collect_entries`), and the readers of the
official split files of UCF101, HMDB51 and Something-Something v2.

Each dataset reader returns ``(entries, classes)``: one :class:`~data_prep.sources.VideoEntry` per
annotated video (split ``train``, or ``val`` for the test / validation split, labelled by class
index) and the class names in the dataset's own order, which ``classes.json`` keeps::

    UCF101   ucfTrainTestlist/  classInd.txt        "1 ApplyEyeMakeup"          (1-based)
                                trainlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
                                testlist0N.txt      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
                                                    (no label: the class folder names it)
    HMDB51   testTrainMulti_7030_splits/  <class>_test_split<N>.txt  "<video>.avi 1"
                                1 = train, 2 = test, 0 = not in split N; classes sorted by name
    SSv2     labels/  labels.json        {"Putting something on a surface": "108", ...}
                      train.json, validation.json   [{"id": "78687", "template":
                                "Holding [something] next to [something]", ...}, ...]
                      the class is the template with its brackets removed (how labels.json
                      writes its keys, as PySlowFast's ssv2.py reads them); videos <id>.webm

Videos are found by file name anywhere under ``--root`` (one walk,
:func:`~data_prep.sources.index_video_root`), as for the Kinetics clips: the archives unpack to
``UCF-101/<class>/``, ``hmdb51_org/<class>/``, ``20bn-something-something-v2/``, but copies are
often flattened or regrouped. The SSv2 file names may carry the ``something-something-v2-``
prefix of the first release.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import DataError
from data_prep.files import read_utf8
from data_prep.options import PrepareOptions
from data_prep.sources import (
    VIDEO_EXTENSIONS,
    VideoEntry,
    index_video_root,
    label_key,
    pick_file,
    read_class_folders,
    read_kinetics_csv,
    read_plain_list,
)

log = logging.getLogger(__name__)

Index = dict[str, list[Path]]  # file stem → paths, from index_video_root


# --------------------------------------------------------------------------- every input


@dataclass
class Inputs:
    """What the inputs of a prepare run list."""

    entries: list[VideoEntry]
    classes: list[str] | None = None  # a standard dataset's own class list, in its order
    indexed: int = 0  # files found under --root
    index_seconds: float = 0.0


def collect_entries(options: PrepareOptions, out: Path) -> Inputs:
    """Every annotated video of every input in ``options``; ``out`` is never indexed."""
    if not (options.csv_files or options.lists or options.folders or options.dataset):
        raise DataError(
            "nothing to prepare: give --csv, --ucf101, --hmdb51 or --ssv2 (with --root), --list "
            "or --folder"
        )
    found = Inputs([])
    if options.csv_files or options.dataset:
        index = _index_root(options, out, found)
    if options.dataset:
        found.entries, found.classes = _read_dataset(options, index)
    for path in options.csv_files:
        found.entries += read_kinetics_csv(path, index, options.extensions)
    for split, path in options.lists.items():
        found.entries += read_plain_list(path, split, options.video_root, options.extensions)
    for split, folder in options.folders.items():
        found.entries += read_class_folders(folder, split, options.extensions)
    return found


def _index_root(options: PrepareOptions, out: Path, found: Inputs) -> dict:
    """The files under --root by stem (the annotations name videos by file name)."""
    if not options.video_root:
        flag = f"--{options.dataset}" if options.dataset else "--csv"
        raise DataError(f"{flag} needs --root, the folder that holds the downloaded videos")
    start = time.perf_counter()
    index = index_video_root(options.video_root, options.extensions, exclude=out)
    found.index_seconds = time.perf_counter() - start
    found.indexed = sum(len(paths) for paths in index.values())
    log.info(
        "indexed %d video files under %s in %.2f s",
        found.indexed,
        options.video_root,
        found.index_seconds,
    )
    return index


def _read_dataset(options: PrepareOptions, index: dict) -> tuple[list[VideoEntry], list[str]]:
    split, extensions = options.split or 1, options.extensions
    if options.ucf101:
        return read_ucf101(options.ucf101, split, index, extensions)
    if options.hmdb51:
        return read_hmdb51(options.hmdb51, split, index, extensions)
    return read_ssv2(options.ssv2, index, extensions)


# --------------------------------------------------------------------------- helpers


def _entry(split, key, label, classes, index, origin, extensions) -> VideoEntry:
    """The entry of the video listed as ``key`` (its stem looked up in ``index``)."""
    stem = Path(key).stem
    found = index.get(stem)
    source = pick_file(found, classes[label], extensions) if found else None
    return VideoEntry(split, key, label, source, stem, origin=origin)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a UTF-8 file (CRLF files too)."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    return [(n, t.strip()) for n, t in enumerate(read_utf8(path).splitlines(), 1) if t.strip()]


def _split_file(folder: Path, stem: str, split: int) -> Path:
    """``trainlist01.txt`` as released (also ``trainlist1.txt``)."""
    for name in (f"{stem}{split:02d}.txt", f"{stem}{split}.txt"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder / f'{stem}{split:02d}.txt'}: split file not found (UCF101 has splits 1, 2, 3;"
        " give the ucfTrainTestlist folder)"
    )


# --------------------------------------------------------------------------- UCF101


def read_ucf101(
    folder: str | Path, split: int, index: Index, extensions=VIDEO_EXTENSIONS
) -> tuple[list[VideoEntry], list[str]]:
    """UCF101 split ``split`` from the ``ucfTrainTestlist`` folder; see the module docstring."""
    folder = Path(folder)
    classes = _ucf101_classes(folder / "classInd.txt")
    by_key = {label_key(name): i for i, name in enumerate(classes)}
    entries = []
    for split_name, stem in (("train", "trainlist"), ("val", "testlist")):
        path = _split_file(folder, stem, split)
        for number, line in _lines(path):
            where = f"{path}:{number}"
            rel, _, label_text = line.partition(" ")
            class_dir = Path(rel).parent.name
            if label_key(class_dir) not in by_key:
                raise DataError(
                    f"{where}: {rel!r} is not in a class folder of classInd.txt (expected "
                    "'ClassName/v_ClassName_gXX_cYY.avi')"
                )
            label = by_key[label_key(class_dir)]
            if label_text.strip() and label_text.strip() != str(label + 1):
                raise DataError(
                    f"{where}: label {label_text.strip()!r} does not match the class folder "
                    f"{class_dir!r}, which is {label + 1} in classInd.txt"
                )
            entries.append(_entry(split_name, rel, label, classes, index, where, extensions))
    return entries, classes


def _ucf101_classes(path: Path) -> list[str]:
    """classInd.txt: "1 ApplyEyeMakeup" ... "101 YoYo" → names in index order."""
    classes = []
    for number, line in _lines(path):
        position, _, name = line.partition(" ")
        if position != str(len(classes) + 1) or not name.strip():
            raise DataError(
                f"{path}:{number}: expected '{len(classes) + 1} ClassName' (classInd.txt numbers "
                f"its classes 1, 2, 3, ...), got {line!r}"
            )
        classes.append(name.strip())
    if not classes:
        raise DataError(f"{path}: no classes listed")
    return classes


# --------------------------------------------------------------------------- HMDB51

_HMDB_SPLIT = re.compile(r"^(?P<name>.+)_test_split(?P<split>\d+)\.txt$")
_HMDB_USE = {"1": "train", "2": "val", "0": None}


def read_hmdb51(
    folder: str | Path, split: int, index: Index, extensions=VIDEO_EXTENSIONS
) -> tuple[list[VideoEntry], list[str]]:
    """HMDB51 split ``split`` from the ``testTrainMulti_7030_splits`` folder: one file per
    class; videos marked 0 are not part of this split and are not listed at all."""
    folder = Path(folder)
    files = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = _HMDB_SPLIT.match(path.name)
            if match and int(match.group("split")) == split:
                files[match.group("name")] = path
    if not files:
        raise DataError(
            f"{folder}: no <class>_test_split{split}.txt files (HMDB51 has splits 1, 2, 3; give "
            "the testTrainMulti_7030_splits folder)"
        )
    classes = sorted(files)
    entries = []
    for label, name in enumerate(classes):
        path = files[name]
        for number, line in _lines(path):
            video, _, use = line.rpartition(" ")
            if use not in _HMDB_USE or not video.strip():
                raise DataError(
                    f"{path}:{number}: expected '<video>.avi 0|1|2' (1 = train, 2 = test, "
                    f"0 = not in this split), got {line!r}"
                )
            if _HMDB_USE[use] is not None:
                key = f"{name}/{video.strip()}"
                where = f"{path}:{number}"
                entries.append(
                    _entry(_HMDB_USE[use], key, label, classes, index, where, extensions)
                )
    return entries, classes


# --------------------------------------------------------------------------- SSv2


def read_ssv2(
    folder: str | Path, index: Index, extensions=VIDEO_EXTENSIONS
) -> tuple[list[VideoEntry], list[str]]:
    """Something-Something v2 train and validation sets from the ``labels`` folder."""
    folder = Path(folder)
    labels = _json(_ssv2_file(folder, "labels"), dict, "a JSON object {template: index}")
    try:
        order = {name: int(value) for name, value in labels.items()}
    except (TypeError, ValueError):
        raise DataError(f"{folder}: labels.json: every value must be a class index") from None
    if sorted(order.values()) != list(range(len(order))):
        raise DataError(f"{folder}: labels.json: the indices are not 0 .. {len(order) - 1}")
    classes = sorted(order, key=order.get)
    by_key = {label_key(name): i for i, name in enumerate(classes)}
    entries = []
    for split_name, stem in (("train", "train"), ("val", "validation")):
        path = _ssv2_file(folder, stem)
        for number, item in enumerate(_json(path, list, "a JSON list of videos"), 1):
            where = f"{path}: video {number}"
            try:
                video_id = str(item["id"]).strip()
                template = re.sub(r"[\[\]]", "", item["template"])
            except (KeyError, TypeError):
                raise DataError(f"{where}: expected {{'id': ..., 'template': ...}}") from None
            label = order.get(template, by_key.get(label_key(template)))
            if label is None or not video_id:
                raise DataError(f"{where} (id {video_id!r}): {template!r} is not in labels.json")
            entries.append(_entry(split_name, video_id, label, classes, index, where, extensions))
    return entries, classes


def _ssv2_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.json", f"something-something-v2-{stem}.json"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / (stem + '.json')}: not found (give the SSv2 labels folder)")


def _json(path: Path, kind: type, what: str):
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, kind):
        raise DataError(f"{path}: expected {what}")
    return data
