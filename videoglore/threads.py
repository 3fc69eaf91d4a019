"""torch's intra-op thread count for one block of code, restored afterwards.

The demo trains with a fixed count on every machine (its numbers depend on it, see
``videoglore.demo``), the GloRe benchmark with ``--threads`` (one by default: on shared cores
OpenMP threads wait for each other), and the test suite with one. Each of them is a caller's
process that goes on afterwards, so the count it found is put back, also after an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the caller's; 0 leaves
    the count as it is (``runtime.threads: 0``)."""
    if count <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
