"""Shared fixtures: tiny generated video datasets (see ``tests/helpers.py``), one torch thread,
and released weights (``zoo:NAME``) that can never be fetched from a public host."""

from __future__ import annotations

import os
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


@pytest.fixture(autouse=True, scope="session")
def _no_public_downloads(tmp_path_factory):
    """``zoo:`` names resolve to an empty cache and a mirror on a closed local port (9, discard),
    in this process and in every process a test starts; tests/test_zoo.py serves its files from
    127.0.0.1 itself."""
    from videoglore import zoo

    saved = {key: os.environ.get(key) for key in (zoo.URL_ENV, zoo.CACHE_ENV)}
    os.environ[zoo.URL_ENV] = "http://127.0.0.1:9"
    os.environ[zoo.CACHE_ENV] = str(tmp_path_factory.mktemp("zoo_cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
