"""Test helpers (import as ``from tests.helpers import ...``): tiny generated datasets and configs.

``write_video_dataset(root, ...)`` writes real H.264 videos (``data_prep.codec.write_video``) in
which each class has its own brightness and motion direction, plus prepared ``train.csv`` /
``val.csv`` lists and ``classes.json`` (``data_prep.lists``), so a tiny network can learn it.
``tiny_config`` is a complete CPU-sized config over such a dataset.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from data_prep.codec import write_video
from data_prep.lists import VideoRecord, write_classes, write_video_list
from videoglore.config import Config, config_from_dict

REPO = Path(__file__).resolve().parents[1]  # the checkout: run.py, configs/


def start_training(config: str | Path) -> subprocess.Popen:
    """``run.py train -c config`` in a process of its own (one thread, unbuffered output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "train", "-c", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class WrappedFile:
    """A file (or container) whose methods a test replaces to fail as a full disk, a read-only
    folder or a flaky read does; everything else is the real object's, and ``with`` closes it."""

    def __init__(self, file):
        self.file = file

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def randomized(model, seed: int = 1):
    """``model`` with every float tensor of its state set to seeded values in [0.1, 1.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.1)
    return model


def _class_video(label: int, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, size, size, 3): a bright square moving right (even labels) or left (odd) over a
    background whose grey level depends on the class."""
    frames = np.full((num_frames, size, size, 3), 40 + 50 * label, dtype=np.uint8)
    side = size // 4
    row = int(rng.integers(0, size - side))
    for t in range(num_frames):
        pos = (t * 2 + int(rng.integers(0, 3))) % (size - side)
        col = pos if label % 2 == 0 else size - side - pos
        frames[t, row : row + side, col : col + side] = (250, 200 - 60 * label % 200, 30)
    return frames


def write_video_dataset(
    root: str | Path,
    num_classes: int = 2,
    videos_per_class: int = 4,
    val_per_class: int = 2,
    num_frames: int = 16,
    size: int = 32,
    seed: int = 0,
) -> dict[str, Path]:
    """Write ``root/videos/<split>/<class>/<n>.mp4`` and the prepared lists; returns their paths."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = [f"class_{c}" for c in range(num_classes)]
    out = {"root": root, "classes": root / "classes.json"}
    for split, per_class in (("train", videos_per_class), ("val", val_per_class)):
        records = []
        for c, name in enumerate(names):
            for n in range(per_class):
                rel = Path("videos") / split / name / f"{n:03d}.mp4"
                write_video(root / rel, _class_video(c, num_frames, size, rng), fps=25)
                records.append(VideoRecord(str(rel), c, name, num_frames, 25.0, size, size))
        write_video_list(root / f"{split}.csv", records)
        out[split] = root / f"{split}.csv"
    write_classes(out["classes"], names)
    return out


def tiny_config_dict(videos: dict[str, Path], out_dir: str | Path) -> dict:
    """A complete CPU-sized config (tiny 3D ResNet-50, 8×1 clips at 32 px) as plain data."""
    return {
        "data": {
            "train_list": str(videos["train"]),
            "val_list": str(videos["val"]),
            "num_frames": 8,
            "frame_interval": 1,
            "train_scale": [32, 36],
            "crop_size": 32,
            "test_scale": 32,
            "num_workers": 0,
        },
        # GloRe off: after a dozen steps the BN running statistics are far from converged and
        # the units' cubic (state × projection × projection) terms overflow in eval mode.
        "model": {"num_classes": 2, "width": 0.0625, "dropout": 0.0, "glore": False},
        "train": {
            "epochs": 2,
            "batch_size": 2,
            "lr": 0.02,
            "lr_batch": 2,
            "warmup_epochs": 0.0,
            "lr_steps": [100.0],
            "deterministic": True,
            "log_every": 1,
        },
        "test": {"num_clips": 2, "num_crops": 1, "batch_size": 2},
        "runtime": {"amp": "off", "device": "cpu"},
        "output": {"dir": str(out_dir)},
    }


def tiny_config(videos: dict[str, Path], out_dir: str | Path, **sections) -> Config:
    """``tiny_config_dict`` with per-section overrides, e.g. ``train={"epochs": 1}``."""
    raw = tiny_config_dict(videos, out_dir)
    for section, values in sections.items():
        raw[section].update(values)
    return config_from_dict(raw)


def non_finite_in_eval(model) -> dict:
    """``model``'s state dict with its first BatchNorm's running variance set to NaN: training
    (batch statistics) is unaffected, every output in eval mode is NaN."""
    state = dict(model.state_dict())
    key = next(k for k in state if k.endswith("running_var"))
    state[key] = state[key].clone().fill_(math.nan)
    return state
