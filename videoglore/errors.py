"""Exceptions that reach users: each message names the file, key or video and says what to do."""


class VideogloreError(Exception):
    """Base class of the errors the CLI reports as a one-line message instead of a traceback."""


class ConfigError(VideogloreError):
    """A config file or override is malformed: unknown key, wrong type, bad value."""


class VideoError(VideogloreError):
    """A video cannot be opened or decoded."""


class DataError(VideogloreError):
    """A dataset list, annotation file or class map is malformed or missing."""


class CheckpointError(VideogloreError):
    """A checkpoint is missing, corrupt or does not fit the model."""


class TrainingError(VideogloreError):
    """Training cannot go on (non-finite loss, out of memory)."""
