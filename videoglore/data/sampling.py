"""Clip samplers: which frame indices of a video make up a clip.

A clip is ``T`` frames taken every ``tau`` frames (the paper's "8×8" = 8 frames, interval 8,
§4.1), so it spans ``(T - 1) * tau + 1`` frames of the source video.

    training:  one random dense clip          ──►  int64 (T,)
    testing:   K clips spaced uniformly       ──►  int64 (K, T)    test.sampling: uniform
               K clips at the released places ──►  int64 (K, T)    test.sampling: released

Videos shorter than the span are looped (indices wrap around modulo the length) instead of
repeating one frame, so a short clip still shows motion. The released code
(``data/video_sampler.py``) instead repeats ``range(num_frames)``; looping with the stride kept is
the same idea with the temporal scale preserved.

The samplers are plain functions of their arguments (the random one takes a
``numpy.random.Generator``), so the dataset can make every choice a function of
(seed, epoch, index) and an interrupted epoch can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data_prep.lists import clip_span


def sample_train_clip(frame_count: int, T: int, tau: int, rng: np.random.Generator) -> np.ndarray:
    """One random dense clip: ``T`` indices ``start + i * tau``; returns int64 (T,).

    The start is uniform over every position where the whole clip fits. A video shorter than
    the span starts anywhere and wraps around (looping).
    """
    _check(frame_count, T, tau)
    span = clip_span(T, tau)
    offsets = np.arange(T, dtype=np.int64) * tau
    if frame_count >= span:
        start = int(rng.integers(0, frame_count - span + 1))
        return start + offsets
    start = int(rng.integers(0, frame_count))
    return (start + offsets) % frame_count


def sample_test_clips(frame_count: int, T: int, tau: int, K: int) -> np.ndarray:
    """``K`` clips spaced uniformly over the video, deterministic; returns int64 (K, T).

    The range of valid starts is cut into ``K`` equal parts and each clip starts in the middle
    of its part, so K = 1 is the centre clip (the validation clip) and K = 10 covers the video
    evenly. A short video is looped, its K clips starting at evenly spaced frames.
    """
    _check(frame_count, T, tau)
    if K < 1:
        raise ValueError(f"number of test clips must be >= 1, got {K}")
    span = clip_span(T, tau)
    offsets = np.arange(T, dtype=np.int64) * tau
    parts = 2 * np.arange(K, dtype=np.int64) + 1  # centres of K equal parts, in halves
    if frame_count >= span:
        starts = (frame_count - span) * parts // (2 * K)
        return starts[:, None] + offsets[None, :]
    starts = frame_count * parts // (2 * K)
    return (starts[:, None] + offsets[None, :]) % frame_count


def sample_test_clips_released(frame_count: int, T: int, tau: int, K: int) -> np.ndarray:
    """``K`` clips where the released test code puts them; returns int64 (K, T).

    Source: facebookresearch/GloRe ``data/video_sampler.py`` (``EvenlySampling``, used by
    ``test/test-single-clip.py`` with K = 1 and by the validation of ``data/iterator_factory.py``).
    The frames that K clips leave over are shared out:

    * none left: the clips sit end to end;
    * some left: K + 1 equal gaps around the clips, each start rounded *up* (ours centres the
      clips in K equal parts and rounds down, so the two differ by a frame or more);
    * too few (the clips must overlap): starts spread evenly from frame 0 so that the last clip
      ends on the last frame, each truncated to an integer.

    The arithmetic is float64 in the released order of operations: exact fractions disagree with
    it in rare cases (715 frames, five 8×8 clips: the third start is 329 exactly, 330 released).
    A video shorter than one clip gives frames 0, 1, 2, ... from the start, starting over after
    the last frame (consecutive frames, not the stride τ), the same for every clip.
    """
    _check(frame_count, T, tau)
    if K < 1:
        raise ValueError(f"number of test clips must be >= 1, got {K}")
    span = clip_span(T, tau)
    if span > frame_count:
        row = np.arange(T, dtype=np.int64) % frame_count
        return np.tile(row, (K, 1))
    spare = frame_count - span * K
    copy = np.arange(K, dtype=np.float64)
    if spare == 0:
        starts = np.arange(K, dtype=np.int64) * span
    elif spare > 0:
        stride = spare / float(K + 1) + span
        starts = np.ceil((copy + 1) * stride - span).astype(np.int64)
    else:
        stride = spare / float(K - 1) + span
        starts = np.trunc(copy * stride).astype(np.int64)
    return starts[:, None] + np.arange(T, dtype=np.int64)[None, :] * tau


# test.sampling → (frame_count, T, tau, K) → int64 (K, T)
TEST_SAMPLERS: dict[str, Callable[[int, int, int, int], np.ndarray]] = {
    "uniform": sample_test_clips,
    "released": sample_test_clips_released,
}


def _check(frame_count: int, T: int, tau: int) -> None:
    if frame_count < 1:
        raise ValueError(f"cannot sample a clip from a video with {frame_count} frames")
    if T < 1 or tau < 1:
        raise ValueError(f"clip length and interval must be >= 1, got T={T}, tau={tau}")
