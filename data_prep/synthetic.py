"""A tiny synthetic action dataset for the demo: the class is the motion, not the appearance.

Each video shows one shape (square or disc, random colour and size) on a noisy background of a
random colour. The class says how it moves: ``left``, ``right``, ``up``, ``down`` (translation)
or ``clockwise``, ``anticlockwise`` (a disc orbiting a point). Start positions are random and
the background noise changes every frame, so a single frame carries no label: a model must use
time, which is what 3D convolutions and GloRe's global reasoning are for.

Layout (folder-per-class per split, the input ``prepare --folder`` reads)::

    out_dir/train/<class>/<class>_0000.mp4
    out_dir/val/<class>/<class>_0006.mp4
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.codec import write_video

log = logging.getLogger(__name__)

MOTIONS = ("left", "right", "up", "down", "clockwise", "anticlockwise")
_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx)


def render_motion_clip(
    motion: str,
    rng: np.random.Generator,
    frames: int = 32,
    size: tuple[int, int] = (64, 64),
    noise: float = 12.0,
) -> np.ndarray:
    """Render one clip; returns uint8 (T, H, W, 3)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
    height, width = size
    side = min(height, width)
    t = np.arange(frames, dtype=np.float32)
    if motion in _DIRECTIONS:
        dy, dx = _DIRECTIONS[motion]
        radius = rng.uniform(0.15, 0.22) * side
        travel = rng.uniform(0.45, 0.6) * side
        # start anywhere the whole path stays inside the frame
        y0 = _start(rng, height, radius, travel * dy)
        x0 = _start(rng, width, radius, travel * dx)
        step = travel / max(frames - 1, 1)
        cy, cx = y0 + dy * step * t, x0 + dx * step * t  # (T,)
    else:
        radius = rng.uniform(0.12, 0.16) * side
        orbit = rng.uniform(0.18, 0.26) * side
        oy = rng.uniform(orbit + radius, height - orbit - radius)
        ox = rng.uniform(orbit + radius, width - orbit - radius)
        turn = rng.uniform(0.6, 1.0) * 2 * math.pi / frames  # radians per frame
        sign = 1.0 if motion == "clockwise" else -1.0  # image y points down: +angle = clockwise
        angle = rng.uniform(0, 2 * math.pi) + sign * turn * t
        cy, cx = oy + orbit * np.sin(angle), ox + orbit * np.cos(angle)
    yy = np.arange(height, dtype=np.float32)[None, :, None]  # (1, H, 1)
    xx = np.arange(width, dtype=np.float32)[None, None, :]  # (1, 1, W)
    ry, rx = yy - cy[:, None, None], xx - cx[:, None, None]  # (T, H, W)
    if rng.random() < 0.5:
        mask = (ry**2 + rx**2) <= radius**2  # disc
    else:
        mask = (np.abs(ry) <= radius) & (np.abs(rx) <= radius)  # square
    # random hues, but always a light shape on a dark background: the label is the motion, and a
    # fixed contrast polarity lets a small net learn it in the few hundred steps a CPU demo has
    background = rng.uniform(0, 100, size=3).astype(np.float32)
    colour = rng.uniform(160, 255, size=3).astype(np.float32)
    video = np.broadcast_to(background, (frames, height, width, 3)).copy()  # (T, H, W, 3)
    video[mask] = colour
    video += rng.normal(0.0, noise, size=video.shape).astype(np.float32)
    return np.clip(video, 0, 255).astype(np.uint8)


def _start(rng: np.random.Generator, length: int, radius: float, shift: float) -> float:
    """A start coordinate such that start and start + shift both keep the shape inside."""
    low = radius - min(shift, 0.0)
    high = length - radius - max(shift, 0.0)
    return float(rng.uniform(low, max(low, high)))


def write_motion_dataset(
    out_dir: str | Path,
    num_classes: int = 4,
    videos_per_class: int = 8,
    *,
    classes: Sequence[str] | None = None,
    frames: int = 32,
    size: tuple[int, int] = (64, 64),
    fps: float = 25.0,
    seed: int = 0,
    val_fraction: float = 0.25,
    keyframe_interval: int = 8,
) -> dict[str, list[Path]]:
    """Write the dataset as H.264 mp4 files; returns {split: [video paths]}.

    Args:
        out_dir: root of the ``<split>/<class>/<id>.mp4`` tree.
        num_classes: use the first ``num_classes`` of :data:`MOTIONS` (ignored with ``classes``).
        videos_per_class: videos per class over both splits.
        classes: motion names to use instead, e.g. ``("left", "right")``.
        frames, size, fps: clip length, (height, width) (even) and frame rate.
        seed: the same seed writes the same videos (each video has its own generator seeded by
            (seed, class, index), so changing the size of the dataset keeps the earlier videos).
        val_fraction: share of each class written to ``val`` (at least one when > 0).
    """
    names = tuple(classes) if classes is not None else MOTIONS[:num_classes]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need distinct class names from {MOTIONS}, got {names}")
    num_val = 0
    if val_fraction > 0 and videos_per_class > 1:
        num_val = min(videos_per_class - 1, max(1, round(videos_per_class * val_fraction)))
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {"train": [], "val": []}
    for class_index, name in enumerate(names):
        for i in range(videos_per_class):
            rng = np.random.default_rng([seed, MOTIONS.index(name), i])
            clip = render_motion_clip(name, rng, frames, size)
            split = "val" if i >= videos_per_class - num_val else "train"
            path = out_dir / split / name / f"{name}_{i:04d}.mp4"
            write_video(path, clip, fps=fps, keyframe_interval=keyframe_interval)
            written[split].append(path)
        log.debug("class %d/%d (%s) written", class_index + 1, len(names), name)
    log.info("wrote %d synthetic videos to %s", sum(map(len, written.values())), out_dir)
    return written
