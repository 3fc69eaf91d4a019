"""Relational action videos: each class is a relation between two distant things.

The GloRe paper (Chen et al., CVPR 2019, §1 and §3) argues that a graph unit lets a 3D CNN relate
regions that are far apart in space and time, which stacked local convolutions reach only through
depth. This module writes a small dataset where *only* such relations carry the label, so the
claim can be checked on a CPU in minutes (``run.py benchmark glore``).

Every relation gives two classes (``<relation>_<variant>``)::

    approach  two objects on opposite sides of the frame move toward / away from each other
              (the two classes are time reversals of each other: any single frame looks alike)
    sync      two distant patches flip between two colours in phase / out of phase
    order     two distant objects appear one after the other, later each makes one short move;
              the object that appeared first moves first / last
    shape     two distant objects have the same / a different shape (sizes and colours differ)

Nothing local carries the label: the (dark) background colour and texture, every (bright)
object's colour, size and (except for ``shape``) outline, the axis joining the two objects and the
phase of the events are drawn at random per video, and distractor blobs wander in and out.
Gaussian pixel noise and H.264 compression are added on top. (Frame sizes of 48 px fail to decode
with decord 0.6 here; 32, 40, 56 and 64 work.)

Data flow::

    RelationalOptions ──render_split──▶ [RelationalVideo(frames uint8 (T, H, W, 3), class)]
                      ──write_relational_videos──▶ DIR/<split>/<class>/<name>.mp4
                      ──data_prep.prepare (folder-per-class)──▶ train.csv, val.csv, classes.json

Every video has its own random stream derived from (seed, split, class, index), so a video does
not change when the number of videos or the set of relations changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
SHAPES = ("disk", "square", "triangle", "cross")
SPLIT_IDS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class RelationalOptions:
    """Size and difficulty of a relational dataset; the defaults are the benchmark's."""

    relations: tuple[str, ...] = ("approach", "sync", "order", "shape")
    videos_per_class: int = 24  # train videos per class
    val_videos_per_class: int = 8
    num_frames: int = 16
    size: int = 56  # frame height = width in pixels (even, for H.264)
    distractors: int = 1  # small wandering blobs per video
    noise: float = 4.0  # std of the Gaussian pixel noise, in 0..255 units
    seed: int = 0
    fps: float = 8.0

    def check(self) -> None:
        unknown = [r for r in self.relations if r not in RELATIONS]
        if unknown or not self.relations:
            raise ConfigError(
                f"relations {unknown or '[]'}: expected a non-empty list from {sorted(RELATIONS)}"
            )
        if self.size < 16 or self.size % 2:
            raise ConfigError(f"size {self.size}: expected an even number of pixels >= 16")
        if self.num_frames < 8:
            raise ConfigError(f"num_frames {self.num_frames}: expected at least 8")
        if self.videos_per_class < 1 or self.val_videos_per_class < 0:
            raise ConfigError("videos_per_class must be >= 1 and val_videos_per_class >= 0")


@dataclass
class RelationalVideo:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    class_name: str
    label: int  # index into class_names(options.relations)
    name: str  # file stem, unique within a split


class Scene:
    """A float RGB canvas (T, H, W, 3) with a random textured background, in 0..255 units."""

    def __init__(self, rng: np.random.Generator, num_frames: int, size: int):
        self.rng, self.num_frames, self.size = rng, num_frames, size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        self.ys, self.xs = ys, xs
        # Low-frequency random texture: a few random plane waves mixed into two random colours.
        field = np.zeros((size, size), np.float32)
        for _ in range(3):
            fy, fx = rng.uniform(-4, 4, size=2)
            field += np.sin(2 * np.pi * (fy * ys + fx * xs) + rng.uniform(0, 2 * np.pi))
        field = (field - field.min()) / (np.ptp(field) + 1e-6)  # (H, W) in 0..1
        # dark, random background colour and texture; objects are bright (see ``colour``), so they
        # are easy to find while neither colour says anything about the label
        c0, c1 = rng.uniform(0, 110, size=(2, 3)).astype(np.float32)
        c1 = c0 + rng.uniform(0.2, 0.5) * (c1 - c0)  # weak texture
        self.background = c0 + field[..., None] * (c1 - c0)  # (H, W, 3)
        self.canvas = np.broadcast_to(self.background, (num_frames, size, size, 3)).copy()

    def colour(self) -> np.ndarray:
        """A random bright colour (some channel >= 170) that stands out from the background."""
        mean = self.background.reshape(-1, 3).mean(0)
        for _ in range(100):
            c = self.rng.uniform(40, 255, size=3).astype(np.float32)
            if c.max() >= 170 and np.linalg.norm(c - mean) > 120:
                return c
        return np.full(3, 230.0, np.float32)

    def draw(self, t: int, shape: str, cy: float, cx: float, radius: float, colour) -> None:
        """Paint ``shape`` centred at (cy, cx) (fractions of the frame) into frame ``t``."""
        r = radius * self.size
        dy = (self.ys * self.size - cy * self.size) / r
        dx = (self.xs * self.size - cx * self.size) / r
        mask = shape_mask(shape, dy, dx)
        self.canvas[t][mask] = colour

    def add_distractors(self, count: int) -> None:
        """Small blobs that wander and come and go at random; they belong to no relation."""
        rng, T = self.rng, self.num_frames
        for _ in range(count):
            shape, colour = rng.choice(SHAPES), self.colour()
            start = rng.integers(0, T // 2)
            stop = rng.integers(start + T // 4, T + 1)
            pos = rng.uniform(0.1, 0.9, size=2)
            step = rng.normal(0, 0.02, size=2)
            for t in range(start, stop):
                pos = np.clip(pos + step, 0.08, 0.92)
                self.draw(t, shape, pos[0], pos[1], 0.04, colour)

    def finish(self, noise: float) -> np.ndarray:
        frames = self.canvas + self.rng.normal(0, noise, size=self.canvas.shape)
        return np.clip(frames, 0, 255).round().astype(np.uint8)  # (T, H, W, 3)


def shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-size ``shape`` on offsets normalised by the radius (y down)."""
    if shape == "disk":
        return dy**2 + dx**2 <= 1.0
    if shape == "square":
        return np.maximum(abs(dy), abs(dx)) <= 0.85
    if shape == "triangle":  # apex up; flips keep it a triangle
        return (dy >= -1.0) & (dy <= 0.9) & (abs(dx) <= 0.6 * (dy + 1.0))
    if shape == "cross":
        return ((abs(dx) <= 0.38) & (abs(dy) <= 1.05)) | ((abs(dy) <= 0.38) & (abs(dx) <= 1.05))
    raise ValueError(f"unknown shape {shape!r}")


def _on_square_axis(rng: np.random.Generator, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Two far-apart points: opposite corners or opposite edge midpoints of a centred square."""
    direction = rng.choice([(1, 1), (1, -1), (1, 0), (0, 1)])
    d = np.array(direction, np.float64) * rng.choice([-1, 1])
    centre = 0.5 + rng.uniform(-0.03, 0.03, size=2)
    return centre + spread * d, centre - spread * d


def _approach(scene: Scene, variant: int) -> None:
    """variant 0: toward each other, 1: away (the time reversal of 0)."""
    rng, T = scene.rng, scene.num_frames
    shapes, colours = rng.choice(SHAPES, size=2), [scene.colour(), scene.colour()]
    radii = rng.uniform(0.07, 0.1, size=2)
    far, near = rng.uniform(0.33, 0.38), rng.uniform(0.08, 0.11)
    a_far, b_far = _on_square_axis(rng, far)
    centre = (a_far + b_far) / 2
    a_near, b_near = centre + (a_far - centre) * near / far, centre + (b_far - centre) * near / far
    for t in range(T):
        s = t / (T - 1) if variant == 0 else 1 - t / (T - 1)
        for k, (p0, p1) in enumerate([(a_far, a_near), (b_far, b_near)]):
            p = p0 + s * (p1 - p0)
            scene.draw(t, shapes[k], p[0], p[1], radii[k], colours[k])


def _sync(scene: Scene, variant: int) -> None:
    """variant 0: the two patches flip colour in phase, 1: out of phase (half a period apart)."""
    rng, T = scene.rng, scene.num_frames
    shapes = rng.choice(SHAPES, size=2)
    pairs = [(scene.colour(), scene.colour()) for _ in range(2)]
    radii = rng.uniform(0.08, 0.11, size=2)
    a, b = _on_square_axis(rng, rng.uniform(0.3, 0.36))
    period = int(rng.integers(4, 7))  # frames per on+off cycle
    phase = int(rng.integers(0, period))
    for t in range(T):
        state_a = ((t + phase) % period) < period / 2
        state_b = state_a if variant == 0 else not state_a
        for k, (p, state) in enumerate([(a, state_a), (b, state_b)]):
            scene.draw(t, shapes[k], p[0], p[1], radii[k], pairs[k][int(state)])


def _order(scene: Scene, variant: int) -> None:
    """Object A appears before B; variant 0: A makes its move first, 1: A moves last."""
    rng, T = scene.rng, scene.num_frames
    shapes, colours = rng.choice(SHAPES, size=2), [scene.colour(), scene.colour()]
    radii = rng.uniform(0.07, 0.1, size=2)
    spread = rng.uniform(0.28, 0.34)
    a, b = _on_square_axis(rng, spread)
    half = T // 2
    appear_a = int(rng.integers(0, max(1, half // 2)))
    appear_b = int(rng.integers(appear_a + 2, half))
    move_len = max(2, T // 8)
    first_move = int(rng.integers(half, T - 2 * move_len + 1))
    second_move = int(rng.integers(first_move + move_len, T - move_len + 1))
    moves = (first_move, second_move) if variant == 0 else (second_move, first_move)
    for k, (p, appear, move) in enumerate([(a, appear_a, moves[0]), (b, appear_b, moves[1])]):
        angle = rng.uniform(0, 2 * np.pi)
        shift = 0.12 * np.array([np.sin(angle), np.cos(angle)])
        shift = np.clip(p + shift, 0.1, 0.9) - p
        for t in range(appear, T):
            s = np.clip((t - move + 1) / move_len, 0.0, 1.0)
            q = p + s * shift
            scene.draw(t, shapes[k], q[0], q[1], radii[k], colours[k])


def _shape(scene: Scene, variant: int) -> None:
    """variant 0: both objects have the same shape, 1: different shapes."""
    rng, T = scene.rng, scene.num_frames
    first = rng.choice(SHAPES)
    second = first if variant == 0 else rng.choice([s for s in SHAPES if s != first])
    colours = [scene.colour(), scene.colour()]
    radii = rng.uniform(0.075, 0.11, size=2)
    a, b = _on_square_axis(rng, rng.uniform(0.3, 0.36))
    steps = rng.normal(0, 0.004, size=(2, 2))  # slow drift so the objects are not frozen
    for t in range(T):
        for k, (p, shape) in enumerate([(a, first), (b, second)]):
            q = p + t * steps[k]
            scene.draw(t, shape, q[0], q[1], radii[k], colours[k])


@dataclass(frozen=True)
class Relation:
    variants: tuple[str, str]
    draw: Callable[[Scene, int], None]


RELATIONS: dict[str, Relation] = {
    "approach": Relation(("toward", "away"), _approach),
    "sync": Relation(("in_phase", "out_of_phase"), _sync),
    "order": Relation(("first_moves_first", "first_moves_last"), _order),
    "shape": Relation(("same", "different"), _shape),
}


def class_names(relations: tuple[str, ...] | list[str]) -> list[str]:
    """Class names in label order: ``<relation>_<variant>`` for each relation and variant."""
    return [f"{r}_{v}" for r in relations for v in RELATIONS[r].variants]


def render_video(options: RelationalOptions, split: str, label: int, index: int) -> np.ndarray:
    """Frames of one video, uint8 (T, H, W, 3); a pure function of its arguments."""
    relation = RELATIONS[options.relations[label // 2]]
    # the stream depends on the class *name*, so adding relations leaves existing videos alone
    name_key = [ord(c) for c in class_names(options.relations)[label]]
    seq = np.random.SeedSequence([options.seed, SPLIT_IDS[split], index, *name_key])
    scene = Scene(np.random.default_rng(seq), options.num_frames, options.size)
    relation.draw(scene, label % 2)
    scene.add_distractors(options.distractors)
    return scene.finish(options.noise)


def render_split(options: RelationalOptions, split: str) -> Iterator[RelationalVideo]:
    """All videos of ``split`` ("train" or "val"), class by class, rendered in memory."""
    options.check()
    if split not in SPLITS:
        raise ConfigError(f"split {split!r}: expected one of {SPLITS}")
    count = options.videos_per_class if split == "train" else options.val_videos_per_class
    for label, name in enumerate(class_names(options.relations)):
        for index in range(count):
            frames = render_video(options, split, label, index)
            yield RelationalVideo(frames, name, label, f"{name}_{split}_{index:04d}")


def write_relational_videos(out_dir: str | Path, options: RelationalOptions) -> Path:
    """Write every split as H.264 videos in the folder-per-class layout prepare reads.

    Layout: ``out_dir/<split>/<class>/<class>_<split>_<index>.mp4``. Returns ``out_dir``.
    """
    from data_prep.codec import write_video

    out_dir = Path(out_dir)
    total = 0
    for split in SPLITS:
        for video in render_split(options, split):
            path = out_dir / split / video.class_name / f"{video.name}.mp4"
            # keyframe every 4 frames: clips start anywhere and these videos are short
            write_video(path, video.frames, fps=options.fps, keyframe_interval=4, crf=18)
            total += 1
    log.info("wrote %d relational videos to %s", total, out_dir)
    return out_dir
