"""The project's exceptions (defined on the torch-free floor, ``data_prep.errors``), and
``explain_out_of_memory``, which turns running out of memory into one of them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
    "explain_out_of_memory",
]

# What the allocators say: torch's CPU allocator raises a plain RuntimeError with one of these
# (the wording changed between releases); CUDA raises torch.OutOfMemoryError.
_CPU_OUT_OF_MEMORY = ("can't allocate memory", "not enough memory")


@contextmanager
def explain_out_of_memory(doing: str, advice: str) -> Iterator[None]:
    """Running out of memory inside the block becomes ``TrainingError("out of [GPU] memory
    DOING; ADVICE")``, one line instead of an allocator traceback; other errors pass.

    Recognised without importing torch: ``MemoryError`` (Python, NumPy), a ``RuntimeError``
    from torch's CPU allocator, and ``torch.OutOfMemoryError`` (CUDA; a RuntimeError subclass).
    """
    try:
        yield
    except MemoryError:
        raise TrainingError(f"out of memory {doing}; {advice}") from None
    except RuntimeError as exc:
        if type(exc).__name__ == "OutOfMemoryError":
            raise TrainingError(f"out of GPU memory {doing}; {advice}") from None
        if any(text in str(exc) for text in _CPU_OUT_OF_MEMORY):
            raise TrainingError(f"out of memory {doing}; {advice}") from None
        raise
