"""Exceptions that reach users: each message names the file, key or video and says what to do.

They live on the torch-free floor (``data_prep``) so that preparation can raise them without
importing ``videoglore``; ``videoglore.errors`` re-exports every one of them.
"""

import reprlib


def bounded_repr(value: object, limit: int = 200) -> str:
    """``repr(value)`` in at most ``limit`` characters (nested containers abbreviated, the rest
    cut with "..."): a value quoted in a message can be anything a user or a file supplied."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VideogloreError(Exception):
    """Base class of the errors the CLI reports as a one-line message instead of a traceback."""


class ConfigError(VideogloreError):
    """A config file, override or command-line value is malformed: unknown key, wrong type,
    value out of range."""


class VideoError(VideogloreError):
    """A video cannot be opened or decoded (a property of the input file)."""


class DataError(VideogloreError):
    """A dataset list, annotation file or class map is malformed or missing."""


class OutputError(VideogloreError):
    """An output cannot be written (disk full, no permission, read-only file system, a file
    in the way). Never a property of the input: work stops, nothing is recorded as broken."""


class CheckpointError(VideogloreError):
    """A checkpoint is missing, corrupt, untrusted or does not fit the model."""


class TrainingError(VideogloreError):
    """Training cannot go on (non-finite loss or scores, out of memory, run directory in use)."""
