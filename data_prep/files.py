"""Writing files so that nothing the user made is ever half-written or lost.

Every output of the project (lists, class maps, configs, metrics, checkpoints, plots, videos)
goes through :func:`atomic_open`: the data is written to a hidden temp file beside the target
and renamed over it only when complete, so a killed process or a full disk leaves either the old
file or the new one, never a torn one. An ``OSError`` while writing becomes an
:class:`~data_prep.errors.OutputError` naming the folder and the cause (disk full, permission,
read-only file system), and the temp file is removed.

    atomic_open(path, "w"|"wb")  ─▶ .NAME.PID.tmp ─(complete)─▶ os.replace ─▶ NAME
                                              └─(any error)─▶ unlinked; OSError → OutputError
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from data_prep.errors import DataError, OutputError

TEMP_SUFFIX = ".tmp"


def temp_path(path: str | Path) -> Path:
    """The hidden temp file :func:`atomic_open` writes before renaming over ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextmanager
def atomic_open(
    path: str | Path,
    mode: str = "w",
    *,
    durable: bool = False,
    newline: str | None = None,
    temp_dir: str | Path | None = None,
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing through a temp file that replaces it only when complete.

    Args:
        path: the final file; its folder is created if needed.
        mode: "w" (text, UTF-8) or "wb" (binary).
        durable: fsync the file and its folder before returning (checkpoints: survive a power
            loss, not only a killed process).
        newline: as for :func:`open` (``""`` for the csv module).
        temp_dir: where the temp file lives (default: beside ``path``); it must be on the same
            file system. ``prepare`` keeps its temp files in one folder that it clears at every
            start, so the partial files of killed workers never pile up beside the outputs.

    Raises:
        OutputError: the folder cannot be created or the file cannot be written (any
            ``OSError`` inside the ``with`` block counts as one), with the folder and the cause
            named; the temp file is removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = temp_path(path) if temp_dir is None else Path(temp_dir) / temp_path(path).name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    except OSError as exc:
        _remove(tmp)
        raise output_error(exc, path) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (UTF-8, non-ASCII kept) atomically; returns ``path``."""
    return atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def check_writable(path: str | Path) -> None:
    """Make ``path``'s folder and write (then remove) the temp file :func:`atomic_open` would
    write there: a command that writes ``path`` after hours of work checks it before the work.

    Raises:
        OutputError: as :func:`atomic_open` would raise it at the end (folder and cause named).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb"):
            pass
    except OSError as exc:
        raise output_error(exc, path) from None
    finally:
        _remove(tmp)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files that killed writers left in ``folder``; returns what was removed.

    Call it only while no other process writes into ``folder`` (e.g. under the run lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
    for p in stale:
        _remove(p)
    return stale


@contextmanager
def as_output_error(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into the :class:`OutputError` for ``path``
    (for output steps that are not one file write: creating folders, appending to a log)."""
    try:
        yield
    except OSError as exc:
        raise output_error(exc, path) from None


def output_error(exc: OSError, path: str | Path) -> OutputError:
    """An :class:`OutputError` for a failed write of ``path``, naming its folder and the cause."""
    folder = Path(path).parent
    cause = exc.strerror or first_line(exc)
    if exc.errno is not None and exc.errno in errno.errorcode:
        cause = f"{cause} ({errno.errorcode[exc.errno]})"
    advice = {
        errno.ENOSPC: "free some space there and rerun",
        errno.EDQUOT: "free some space there and rerun",
        errno.EACCES: "make it writable and rerun",
        errno.EPERM: "make it writable and rerun",
        errno.EROFS: "choose a writable folder",
        errno.EEXIST: "a file stands where a folder is needed; move it away and rerun",
        errno.ENOTDIR: "a file stands where a folder is needed; move it away and rerun",
        errno.EISDIR: "a folder stands where the file goes; move it away and rerun",
    }.get(exc.errno or 0, "fix it and rerun")
    return OutputError(f"cannot write to {folder}: {cause} (writing {Path(path).name}); {advice}")


def read_utf8(path: str | Path) -> str:
    """The text of ``path``, which must be UTF-8 (a leading byte-order mark is dropped).

    Raises:
        DataError: naming the file and the first byte that is not UTF-8, with its offset and
            line, instead of a UnicodeDecodeError traceback.
        FileNotFoundError, OSError: as for :func:`open` (callers name what was expected).
    """
    data = Path(path).read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}, line {line});"
            " save it as UTF-8"
        ) from None


def read_csv(path: str | Path, columns: Iterable[str], what: str, expected: str) -> csv.DictReader:
    """The rows of the UTF-8 CSV file ``path`` as dicts, once its header has every one of
    ``columns``.

    Raises:
        DataError: ``"{path}: not {what}, missing columns [...] (expected {expected})"``, or
            naming a byte that is not UTF-8 (:func:`read_utf8`).
    """
    rows = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    check_columns(path, rows.fieldnames or (), columns, what, expected)
    return rows


def check_columns(
    path: str | Path, header: Iterable[str], columns: Iterable[str], what: str, expected: str
) -> None:
    """Raise the DataError of :func:`read_csv` when ``header`` lacks any of ``columns``."""
    missing = set(columns) - set(header)
    if missing:
        raise DataError(
            f"{path}: not {what}, missing columns {sorted(missing)} (expected {expected})"
        )


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
