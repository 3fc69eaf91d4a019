"""Exceptions that reach users: each message names the file, key or video and says what to do.

They live on the torch-free floor (``data_prep``) so that preparation can raise them without
importing ``videoglore``; ``videoglore.errors`` re-exports every one of them. ``bounded_repr``
is the repr for values quoted in their messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class VideogloreError(Exception):
    """Base class of the errors the CLI reports as a one-line message instead of a traceback."""


class ConfigError(VideogloreError):
    """A config file, override or command-line value is malformed: unknown key, wrong type,
    value out of range."""


class VideoError(VideogloreError):
    """A video cannot be opened or decoded (a property of the input file)."""


class UnreadableError(VideoError):
    """A video file could not be read for a reason outside it: no permission, an I/O error, a
    stale network file handle, a timeout. Says nothing about the video: ``prepare`` reports it
    and never remembers it as a verdict, so the next run tries again."""


class DataError(VideogloreError):
    """A dataset list, annotation file or class map is malformed or missing."""


class OutputError(VideogloreError):
    """An output cannot be written (disk full, no permission, read-only file system, a file
    in the way). Never a property of the input: work stops, nothing is recorded as broken."""


class CheckpointError(VideogloreError):
    """A checkpoint is missing, corrupt, untrusted or does not fit the model."""


class TrainingError(VideogloreError):
    """Training or inference cannot go on (non-finite loss or scores, out of memory, run
    directory in use)."""


def bounded_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (``...`` marks a cut), for values
    quoted in messages.

    Built piece by piece and stopped at the limit, so it costs O(limit) however large the value:
    a "billion laughs" tree of shared lists (YAML aliases, pickle memo references) or a string
    of gigabytes is quoted at once, where ``repr`` would never return. Lists, tuples, dicts and
    strings are written as ``repr`` writes them (a list inside itself as ``[...]``); an int too
    long to print in ``limit`` characters as ``<int of N bits>``.
    """
    pieces: list[str] = []
    size = 0
    for piece in _repr_pieces(value, limit, set()):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(pieces)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _repr_pieces(value: Any, limit: int, open_ids: set[int]) -> Iterator[str]:
    """The text of ``repr(value)`` in pieces, lazily (``open_ids``: containers being written)."""
    brackets = {list: "[]", tuple: "()", dict: "{}"}.get(type(value))
    if brackets is None:
        yield _leaf_repr(value, limit)
        return
    if id(value) in open_ids:
        yield brackets[0] + "..." + brackets[1]
        return
    open_ids.add(id(value))
    yield brackets[0]
    items = value.items() if isinstance(value, dict) else ((item, None) for item in value)
    for i, (item, mapped) in enumerate(items):
        if i:
            yield ", "
        yield from _repr_pieces(item, limit, open_ids)
        if isinstance(value, dict):
            yield ": "
            yield from _repr_pieces(mapped, limit, open_ids)
    if isinstance(value, tuple) and len(value) == 1:
        yield ","
    yield brackets[1]
    open_ids.discard(id(value))


def _leaf_repr(value: Any, limit: int) -> str:
    if isinstance(value, str | bytes):
        return repr(value[: limit + 1])  # longer than the limit either way: cut afterwards
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # > limit digits
        return f"<int of {value.bit_length()} bits>"
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not replace the error being reported
        return f"<{type(value).__name__}>"
