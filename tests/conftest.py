"""Shared fixtures: tiny generated video datasets (see ``tests/helpers.py``), one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_video_dataset


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> dict[str, Path]:
    """One shared 2-class dataset: 4 train and 2 val videos per class, 16 frames at 32 px."""
    return write_video_dataset(tmp_path_factory.mktemp("tiny_videos"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The test machines share 2 cores between several jobs: intra-op threads only oversubscribe."""
    from videoglore.threads import torch_threads

    with torch_threads(1):
        yield
