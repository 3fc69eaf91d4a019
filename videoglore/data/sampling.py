"""Clip samplers: which frame indices of a video make up a clip.

A clip is ``T`` frames taken every ``tau`` frames (the paper's "8×8" = 8 frames, interval 8,
§4.1), so it spans ``(T - 1) * tau + 1`` frames of the source video.

    training:  one random dense clip          ──►  int64 (T,)
    testing:   K clips spaced uniformly       ──►  int64 (K, T)

Videos shorter than the span are looped (indices wrap around modulo the length) instead of
repeating one frame, so a short clip still shows motion. The released code
(``data/video_sampler.py``) instead repeats ``range(num_frames)``; looping with the stride kept is
the same idea with the temporal scale preserved.

The samplers are plain functions of their arguments (the random one takes a
``numpy.random.Generator``), so the dataset can make every choice a function of
(seed, epoch, index) and an interrupted epoch can be replayed exactly.
"""

from __future__ import annotations

import numpy as np


def clip_span(T: int, tau: int) -> int:
    """Number of source frames covered by a clip of ``T`` frames at interval ``tau``."""
    return (T - 1) * tau + 1


def sample_train_clip(num_frames: int, T: int, tau: int, rng: np.random.Generator) -> np.ndarray:
    """One random dense clip: ``T`` indices ``start + i * tau``; returns int64 (T,).

    The start is uniform over every position where the whole clip fits. A video shorter than
    the span starts anywhere and wraps around (looping).
    """
    _check(num_frames, T, tau)
    span = clip_span(T, tau)
    offsets = np.arange(T, dtype=np.int64) * tau
    if num_frames >= span:
        start = int(rng.integers(0, num_frames - span + 1))
        return start + offsets
    start = int(rng.integers(0, num_frames))
    return (start + offsets) % num_frames


def sample_test_clips(num_frames: int, T: int, tau: int, K: int) -> np.ndarray:
    """``K`` clips spaced uniformly over the video, deterministic; returns int64 (K, T).

    The range of valid starts is cut into ``K`` equal parts and each clip starts in the middle
    of its part, so K = 1 is the centre clip (the validation clip) and K = 10 covers the video
    evenly. A short video is looped, its K clips starting at evenly spaced frames.
    """
    _check(num_frames, T, tau)
    if K < 1:
        raise ValueError(f"number of test clips must be >= 1, got {K}")
    span = clip_span(T, tau)
    offsets = np.arange(T, dtype=np.int64) * tau
    parts = 2 * np.arange(K, dtype=np.int64) + 1  # centres of K equal parts, in halves
    if num_frames >= span:
        starts = (num_frames - span) * parts // (2 * K)
        return starts[:, None] + offsets[None, :]
    starts = num_frames * parts // (2 * K)
    return (starts[:, None] + offsets[None, :]) % num_frames


def _check(num_frames: int, T: int, tau: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample a clip from a video with {num_frames} frames")
    if T < 1 or tau < 1:
        raise ValueError(f"clip length and interval must be >= 1, got T={T}, tau={tau}")
