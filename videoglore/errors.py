"""The project's exceptions (defined on the torch-free floor, ``data_prep.errors``)."""

from data_prep.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    OutputError,
    TrainingError,
    UnreadableError,
    VideoError,
    VideogloreError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "OutputError",
    "TrainingError",
    "UnreadableError",
    "VideoError",
    "VideogloreError",
]
