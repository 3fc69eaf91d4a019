"""Class names: the standard lists, a class file, or the labels themselves → classes.json.

``--classes`` takes a standard name (``kinetics400``, ``kinetics600``: bundled lists in their
standard order; ``kinetics700``: derived from the CSVs, see :data:`STANDARD_CLASSES`) or a
file; a dataset reader (UCF101's classInd.txt, ...) gives its own list. Without any, an
index-labelled list is named from its class folders and name labels are sorted. Label spellings
are matched ignoring case and ``_`` vs space (:func:`~data_prep.sources.label_key`), and every
error names the annotation line of the first entry at fault.

Bundled lists: ``resources/kinetics400_classes.txt`` (sorted names, the class order of the
released GloRe models);
``resources/kinetics600_classes.txt``, 600 names, alphabetical, identical in tensorflow/models
(``official/projects/movinet/files/kinetics_600_labels.txt``) and in an independent copy of the
K600 names; 368 of them are K400 names unchanged, as the K600 note (Carreira et al., 2018,
arXiv 1808.01340) says.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from data_prep.errors import DataError
from data_prep.files import read_utf8
from data_prep.sources import VideoEntry, label_key

KINETICS400 = "kinetics400"
# --classes keywords → class count. A bundled list (resources/<name>_classes.txt) is used where
# one exists; kinetics700 has none (no second complete public source to check one against) and
# is derived from the CSVs' own labels, with the same count and order checks.
STANDARD_CLASSES = {KINETICS400: 400, "kinetics600": 600, "kinetics700": 700}


@functools.cache
def bundled_names(name: str) -> tuple[str, ...] | None:
    """A bundled standard class list (``kinetics400``, ``kinetics600``) in its standard order,
    read once per process; None when none is bundled under that name."""
    text = resources.files("data_prep").joinpath(f"resources/{name}_classes.txt")
    return tuple(text.read_text(encoding="utf-8").splitlines()) if text.is_file() else None


def load_class_names(spec: str, entries: list[VideoEntry] = ()) -> list[str]:
    """Class names from a standard name (``kinetics400``, ``kinetics600``, ``kinetics700``), a
    JSON list, or a text file (one a line). A standard list that is not bundled is derived from
    the labels of ``entries`` (:func:`derive_standard_names`)."""
    if spec in STANDARD_CLASSES:
        bundled = bundled_names(spec)
        return list(bundled) if bundled is not None else derive_standard_names(spec, entries)
    path = Path(spec)
    if not path.is_file():
        standard = ", ".join(STANDARD_CLASSES)
        raise DataError(f"{path}: class file not found (give a .txt/.json file or {standard})")
    if path.suffix == ".json":
        from data_prep.lists import read_classes

        return read_classes(path)
    names = [line.strip() for line in read_utf8(path).splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names are not unique")
    return names


def derive_standard_names(spec: str, entries: list[VideoEntry]) -> list[str]:
    """The classes of a standard dataset from its annotations: the label names as the training
    CSV spells them, sorted with case and ``_`` folded (the standard order), checked: exactly the
    dataset's number of classes, and every label of another split also a training label.

    Raises:
        DataError: naming the count found, or the first label and annotation line at fault.
    """
    expected = STANDARD_CLASSES[spec]
    by_index = next((e for e in entries if isinstance(e.label, int)), None)
    if by_index is not None:
        raise DataError(
            f"{by_index.origin}: --classes {spec} takes the names from the labels of the "
            "annotation CSVs, but this list labels videos by index; give the names with "
            "--classes FILE"
        )
    train = {label_key(e.label) for e in entries if e.split == "train"}
    stray = next(
        (e for e in entries if e.split != "train" and label_key(e.label) not in train), None
    )
    if train and stray is not None:
        raise DataError(
            f"{stray.origin}: label {stray.label!r} ({stray.split}) is not a label of the "
            f"training CSV; with --classes {spec} every label must be a training label"
        )
    # one name per class: the training CSV's first spelling (the others' if it has none),
    # ordered as the names are, case and "_" folded (label_key)
    spelling: dict[str, str] = {}
    for e in sorted(entries, key=lambda e: e.split != "train"):
        spelling.setdefault(label_key(e.label), e.label)
    names = [spelling[key] for key in sorted(spelling)]
    if len(names) != expected:
        raise DataError(
            f"--classes {spec}: the annotations name {len(names)} classes, not {expected}; give "
            f"the {spec} CSVs of every split (train and validate), or the class names with "
            "--classes FILE"
        )
    return names


def canonical_names(
    names: set[str], known: list[str] | None, origins: dict[str, str] | None = None
) -> dict[str, str]:
    """Map label spellings found in the input to class names.

    With ``known`` (from ``--classes``) each spelling is matched ignoring case and ``_`` vs space;
    an unknown one is a DataError naming it (and its annotation line, from ``origins``).
    Without it, spellings that all match the class folders of a bundled Kinetics list
    (``air_drumming``) take the official spelling (``air drumming``) so lists prepared from
    CSVs and from folders agree; anything else is kept as written.
    """
    if known is None:
        for name in (KINETICS400, "kinetics600"):
            mapping = _match(names, bundled_names(name))
            if None not in mapping.values():
                return mapping
        return {n: n for n in names}
    mapping = _match(names, known)
    unknown = sorted(n for n, m in mapping.items() if m is None)
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        where = f"{origins[unknown[0]]}: " if origins and unknown[0] in origins else ""
        raise DataError(
            f"{where}{len(unknown)} label(s) are not in the class list given with --classes: "
            f"{shown}{' ...' if len(unknown) > 5 else ''}"
        )
    return mapping


def _match(names: set[str], reference) -> dict[str, str | None]:
    """Each spelling → the reference name with the same :func:`label_key`, or None."""
    by_key = {label_key(n): n for n in reference}
    return {n: by_key.get(label_key(n)) for n in names}


_ONE_BASED = "labels count from 0 here; UCF101's split files count from 1: use --ucf101 DIR"


def resolve_classes(entries: list[VideoEntry], known: list[str] | None):
    """Class list and an ``entry -> (index, name)`` function.

    Order: ``known`` (``--classes``, a dataset's own class file) when given; else the indices
    of an index-labelled list; else sorted label names (for Kinetics this is the standard
    order). Errors name the annotation line of the first entry at fault.
    """
    by_index = {}
    for e in entries:
        if isinstance(e.label, int):
            by_index.setdefault(e.label, e)
    if by_index and known is None:
        known = _names_from_folders(entries, by_index)
    top = max(by_index, default=-1)
    if known is not None and top >= len(known):
        raise DataError(
            f"{by_index[top].origin}: label index {top} is out of range for {len(known)} "
            f"classes ({_ONE_BASED})"
        )
    origins = {}
    for e in entries:
        if isinstance(e.label, str):
            origins.setdefault(e.label, e.origin)
    mapping = canonical_names(set(origins), known, origins)
    classes = known if known is not None else sorted(set(mapping.values()))
    position = {name: i for i, name in enumerate(classes)}

    def label_of(entry: VideoEntry) -> tuple[int, str]:
        if isinstance(entry.label, int):
            return entry.label, classes[entry.label]
        name = mapping[entry.label]
        return position[name], name

    return classes, label_of


def _names_from_folders(entries: list[VideoEntry], by_index: dict[int, VideoEntry]) -> list[str]:
    """Name index labels after the class folder holding their videos (released lists store
    ``class_name/clip.mp4``), e.g. index 1 → ``air_drumming`` → ``air drumming``."""
    folders: dict[int, set[str]] = {}
    for e in entries:
        if isinstance(e.label, int):
            folders.setdefault(e.label, set()).add(Path(e.key).parent.name)
    bad = [i for i, f in folders.items() if len(f) != 1 or "" in f]
    gaps = sorted(set(range(max(folders) + 1)) - set(folders))
    if bad or gaps:
        index = (bad or gaps)[0]
        where = by_index.get(index) or by_index[min(by_index)]
        raise DataError(
            f"{where.origin}: the list labels videos by index but the class names cannot be read "
            f"from the folders (index {index}: {'no videos' if not bad else 'mixed folders'}; "
            f"{_ONE_BASED}); give the names with --classes FILE (or --classes {KINETICS400})"
        )
    raw = [next(iter(folders[i])) for i in range(len(folders))]
    mapping = canonical_names(set(raw), None)
    return [mapping[n] for n in raw]
