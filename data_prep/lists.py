"""Prepared dataset lists: the contract between ``data_prep`` (writer) and the loaders (reader).

A prepared split is a CSV file with a header::

    path,label,label_name,num_frames,fps,width,height,rotation

``path`` is relative to the list's folder (or absolute); ``label`` is the index into the class
list stored beside it as ``classes.json`` (a JSON list of names, position = index). The column
``num_frames`` (the video's length, as decord counts it) is ``VideoRecord.frame_count`` in code,
where ``num_frames`` is the clip length T of the config (``data.num_frames``). ``rotation`` is
the number of degrees (0, 90, 180, 270) to turn the decoded frames clockwise to make them
upright, and ``width`` × ``height`` is the upright size: the stored frames are ``height`` rows
high for 0 and 180, ``width`` rows high for 90 and 270. Writers always write ``rotation``; a list
without the column (written before it existed) reads as 0 everywhere.

A list read back is a :class:`VideoList`: a few flat arrays, no Python object per video, so
the DataLoader workers forked from a process share it without copying it.
"""

from __future__ import annotations

import csv
import io
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, astuple, dataclass, fields
from itertools import islice, repeat
from pathlib import Path
from typing import NoReturn

import numpy as np

from data_prep.errors import DataError, bounded_repr
from data_prep.files import atomic_open, check_columns, first_line, read_utf8, write_json

ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class VideoRecord:
    path: str  # relative to the list's folder when written; resolved by read_video_list
    label: int
    label_name: str
    frame_count: int  # the video's length in frames (list column num_frames)
    fps: float
    width: int  # upright size (after rotation)
    height: int
    rotation: int = 0  # degrees clockwise that turn the decoded frames upright


RENAMED = {"frame_count": "num_frames"}  # VideoRecord field → list column, where they differ
LIST_COLUMNS = tuple(RENAMED.get(f.name, f.name) for f in fields(VideoRecord))
# a column whose field has a default may be missing from a list (written before it existed)
REQUIRED_COLUMNS = tuple(
    RENAMED.get(f.name, f.name) for f in fields(VideoRecord) if f.default is MISSING
)
# One row of a VideoList's table: the record's fields after the path, label_name as an index
# into the list's table of names.
ROW = np.dtype(
    [(f.name, np.float64 if f.name == "fps" else np.int64) for f in fields(VideoRecord)[1:]]
)
CHUNK_CHARS = 1 << 20  # text read into Python objects at a time: bounds the reader's memory


def clip_span(T: int, tau: int) -> int:
    """Source frames covered by a clip of ``T`` frames taken every ``tau``: ``(T - 1) * tau + 1``
    (57 for the 8x8 recipes). A listed video shorter than this is looped by the samplers, and
    ``prepare`` counts such videos per split."""
    return (T - 1) * tau + 1


class VideoList(Sequence[VideoRecord]):
    """The videos of a prepared list in three flat arrays; ``videos[i]`` is a ``VideoRecord``.

    Every rank reads its lists at start-up and every DataLoader worker is a fork of it. Records
    held as Python objects are copied into each worker as soon as it reads them (reference
    counts write to the shared pages): 650,000 of them are about 0.3-0.6 GB in the parent and
    again in each of its workers. Here a worker only reads arrays, and ``videos[i]`` builds its
    record when asked (a few µs, nothing next to decoding a clip):

        paths    bytes, the listed paths in UTF-8 one after the other; offsets int64 (N + 1,)
        table    (N,) rows of ``ROW``: the other fields, label_name as an index into
        names    the distinct label names

    Paths are kept as listed and joined to ``base`` (the list's folder or ``data.root``) when a
    record is built, to the string ``str(Path(base) / listed)`` gives; absolute ones stay as
    they are. A slice is a ``VideoList`` of those rows.
    """

    def __init__(
        self,
        paths: bytes,
        offsets: np.ndarray,
        table: np.ndarray,
        names: tuple[str, ...],
        base: str | None = None,
    ) -> None:
        for array in (offsets, table):
            array.flags.writeable = False
        self._paths, self._offsets, self._table, self._names = paths, offsets, table, names
        self.base = base
        self._prefix = "" if base in (None, ".") else base if base.endswith("/") else base + "/"

    @classmethod
    def of(cls, records: Iterable[VideoRecord]) -> VideoList:
        """``records`` as a VideoList (itself if it is one already); paths are kept as given."""
        if isinstance(records, VideoList):
            return records
        records = list(records)
        builder = _Builder(len(records), sum(len(r.path) for r in records))
        builder.add(lambda column: [getattr(r, _FIELD.get(column, column)) for r in records])
        return builder.finish(None)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._take(np.arange(len(self))[index])
        i = operator.index(index)
        i = i + len(self) if i < 0 else i
        if not 0 <= i < len(self):
            raise IndexError(f"video list index {index} out of range 0..{len(self) - 1}")
        start, stop = self._offsets[i], self._offsets[i + 1]
        listed = self._paths[start:stop].decode("utf-8", "surrogateescape")
        label, name, *numbers = self._table.item(i)  # Python ints and a float, in field order
        return VideoRecord(self._resolve(listed), label, self._names[name], *numbers)

    def __iter__(self) -> Iterator[VideoRecord]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"VideoList({len(self)} videos, base={self.base!r})"

    def column(self, name: str) -> np.ndarray:
        """The read-only (N,) array of a numeric field of the records: label, frame_count, fps,
        width, height or rotation."""
        return self._table[name]

    def frame_sizes(self) -> set[tuple[int, int, int]]:
        """The distinct (height, width, rotation) of the videos whose size is listed (not 0)."""
        t = self._table
        known = (t["height"] > 0) & (t["width"] > 0)
        rows = np.stack([t["height"][known], t["width"][known], t["rotation"][known]], axis=1)
        return {tuple(row) for row in np.unique(rows, axis=0).tolist()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the names table aside)."""
        return len(self._paths) + self._offsets.nbytes + self._table.nbytes

    def _resolve(self, listed: str) -> str:
        """``str(Path(base) / listed)``; plain relative paths (no empty or "." part) are joined
        by concatenation, which gives the same string ~10x faster."""
        if self.base is None:
            return listed
        parts = listed.split("/")
        if listed and listed[0] != "/" and "" not in parts and "." not in parts:
            return self._prefix + listed
        return str(Path(self.base) / listed)

    def _take(self, rows: np.ndarray) -> VideoList:
        starts, lengths = self._offsets[rows], np.diff(self._offsets)[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        paths = np.frombuffer(self._paths, np.uint8)[positions].tobytes()
        return VideoList(paths, offsets, self._table[rows], self._names, self.base)


_FIELD = {v: k for k, v in RENAMED.items()}  # list column → VideoRecord field


class _Builder:
    """Fills the arrays of a VideoList chunk by chunk.

    The arrays are allocated once, at their final size or above (``rows``, ``path_bytes``:
    upper bounds; they grow if not), and filled in place: chunk-sized arrays kept until the end
    would lie between the reader's freed temporaries in the malloc heap, which could then not
    be given back to the system (measured: 80 MB of a 650k-row list's 170 MB were such holes).
    """

    def __init__(self, rows: int, path_bytes: int) -> None:
        self.table = np.empty(rows, ROW)
        self.paths = np.empty(path_bytes, np.uint8)
        self.offsets = np.zeros(rows + 1, np.int64)
        self.rows = 0
        self.names: dict[str, int] = {}

    def add(self, values) -> None:
        """Append the rows whose list column ``c`` holds ``values(c)`` (strings or numbers; None
        for an optional column the list lacks). Raises ValueError (or TypeError, OverflowError)
        when a value is not what its column holds; the rows are then not added."""
        encoded = [p.encode("utf-8", "surrogateescape") for p in values("path")]
        n, start = len(encoded), self.rows
        self._reserve(start + n, self.offsets[start] + sum(map(len, encoded)))
        table = self.table[start : start + n]
        for f in fields(VideoRecord)[1:]:
            column = values(RENAMED.get(f.name, f.name))
            if f.name == "label_name":
                for name in dict.fromkeys(column):  # the chunk's distinct names, in order
                    self.names.setdefault(name, len(self.names))
                table[f.name] = list(map(self.names.__getitem__, column))
            elif column is None:
                table[f.name] = f.default
            else:  # numpy converts strings with int() and float(): the same values, errors
                table[f.name] = np.array(column, ROW[f.name])
        if not np.isin(table["rotation"], ROTATIONS).all():
            raise ValueError(f"rotation must be one of {', '.join(map(str, ROTATIONS))}")
        ends = self.offsets[start] + np.cumsum(np.fromiter(map(len, encoded), np.int64, n))
        self.offsets[start + 1 : start + n + 1] = ends
        self.paths[self.offsets[start] : self.offsets[start + n]] = np.frombuffer(
            b"".join(encoded), np.uint8
        )
        self.rows += n

    def _reserve(self, rows: int, path_bytes: int) -> None:
        if rows > len(self.table):
            self.table = _grown(self.table, max(rows, 2 * len(self.table)))
            self.offsets = _grown(self.offsets, len(self.table) + 1)
        if path_bytes > len(self.paths):
            self.paths = _grown(self.paths, max(path_bytes, 2 * len(self.paths)))

    def finish(self, base: str | None) -> VideoList:
        """The VideoList of the rows added."""
        n = self.rows
        paths = self.paths[: self.offsets[n]].tobytes()
        # views: the few spare rows stay allocated, spare pages never touched cost nothing
        return VideoList(paths, self.offsets[: n + 1], self.table[:n], tuple(self.names), base)


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` in a larger array of ``size`` items (the new ones uninitialised)."""
    grown = np.empty(size, array.dtype)
    grown[: len(array)] = array
    return grown


def write_video_list(path: str | Path, records: Iterable[VideoRecord]) -> None:
    """Write a prepared list atomically (temp file + rename), every column included."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LIST_COLUMNS)
        writer.writerows(astuple(record) for record in records)


_Parsed = tuple[list[str], Iterator[list[Sequence[str]]]]  # the header, chunks of columns


def read_video_list(path: str | Path, root: str | Path | None = None) -> VideoList:
    """Read a prepared list; relative paths are resolved against ``root`` or the list's folder.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8, lacks a column, or a row is
            malformed (naming the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: list file not found (run `run.py prepare` first)")
    try:
        text = read_utf8(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the list ({exc.strerror or exc})") from None
    base = str(Path(root) if root else path.parent)
    try:
        try:
            return _build(path, text, _plain_rows, base)
        except _NotPlain:  # quoted fields, \r line ends, ragged rows: the csv module
            return _build(path, text, _csv_rows, base)
    except (ValueError, TypeError, OverflowError):
        _raise_malformed(path, text)


def _build(path: Path, text: str, parse: Callable[[str], _Parsed], base: str) -> VideoList:
    """A VideoList of ``text``, split into a header and chunks of columns by ``parse``."""
    header, chunks = parse(text)
    expected = f"header {','.join(LIST_COLUMNS)}"
    check_columns(path, header, REQUIRED_COLUMNS, "a prepared list", expected)
    index = {name: i for i, name in enumerate(header)}  # a repeated name: the last one wins
    # Upper bounds: every row ends at a line end or at the end of the text, and the paths are
    # part of the text (UTF-8: at most 4 bytes a character; untouched memory costs nothing).
    rows = text.count("\n") + text.count("\r") + 1
    builder = _Builder(rows, len(text) * (1 if text.isascii() else 4))
    for columns in chunks:
        builder.add(lambda name, columns=columns: columns[index[name]] if name in index else None)
    return builder.finish(base)


class _NotPlain(Exception):
    """The text needs the csv module (see ``_plain_rows``)."""


def _plain_rows(text: str) -> _Parsed:
    """The header and the columns of a list that needs no CSV parsing, a chunk of lines at a
    time: the lists our writer makes (no quotes, \\r\\n or \\n line ends, every row as wide as
    the header), read 2x faster than by the csv module. Raises _NotPlain for any other text,
    perhaps only after some chunks."""
    if '"' in text or text.count("\r") != text.count("\r\n"):
        raise _NotPlain
    end = text.find("\n")
    end = len(text) if end < 0 else end
    header = text[:end].removesuffix("\r").split(",")
    return header, _plain_chunks(text, end + 1, len(header))


def _plain_chunks(text: str, start: int, width: int) -> Iterator[list[list[str]]]:
    commas = {width - 1}
    while start < len(text):
        end = text.find("\n", start + CHUNK_CHARS)
        end = len(text) if end < 0 else end
        chunk = text[start:end].replace("\r\n", "\n")
        lines = [line for line in chunk.split("\n") if line]  # csv skips blank lines
        start = end + 1
        if not lines:
            continue
        if set(map(str.count, lines, repeat(",", len(lines)))) != commas:
            raise _NotPlain
        cells = ",".join(lines).split(",")
        yield [cells[i::width] for i in range(width)]


def _csv_rows(text: str) -> _Parsed:
    """The header and the columns of any CSV text, 16,384 rows at a time (``csv.reader``)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    return header, _csv_chunks(reader, len(header))


def _csv_chunks(reader, width: int) -> Iterator[list[Sequence[str]]]:
    while batch := list(islice(reader, 1 << 14)):
        rows = [row for row in batch if row]  # blank lines are no rows, as for csv.DictReader
        if not rows:
            continue
        if min(map(len, rows)) < width:
            raise ValueError("a row is shorter than the header")
        yield list(zip(*rows, strict=False))


def _raise_malformed(path: Path, text: str) -> NoReturn:
    """Raise the DataError naming the first row that cannot be read, and its line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    for row in reader:
        if not row:
            continue
        cells = dict(zip(header, row, strict=False))
        try:
            if len(row) < len(header):
                raise ValueError(f"{len(row)} values for {len(header)} columns")
            _Builder(1, 0).add(lambda name, c=cells: [c[name]] if name in c else None)
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(
                f"{path}:{reader.line_num}: malformed row {bounded_repr(cells)} ({first_line(exc)})"
            ) from None
    raise DataError(f"{path}: malformed list")  # not reached: some row failed above


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
