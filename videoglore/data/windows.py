"""Windows of a long video: where they lie, which frames their clips use, and one pass over
the frames in frame order that fills every window's views (``predict --window``,
engine/windows.py, which states the rules at the edges).

    frame count ─plan_windows─▶ [start, end) every stride ─window_clips─▶ Window (K, T) indices
    video.decode_clip(WindowStream.indices_for: the union of the windows' frames, once each)
      ─▶ WindowStream.put(frame): into the views (transforms.EvalViews) of every open window
         that uses it; a window opens at its first frame and is handed to ``score`` at its
         last, then dropped: only the windows between their first and last frame hold views
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from videoglore.data.sampling import TEST_SAMPLERS


@dataclass
class Window:
    """Frames [start, end) of a video and the frame indices of its clips, all inside it."""

    start: int
    end: int
    clips: np.ndarray  # int64 (K, T): absolute frame indices, clip k in row k

    @cached_property
    def first(self) -> int:
        """The first frame the window's clips use: the window opens when it arrives."""
        return int(self.clips.min())

    @cached_property
    def last(self) -> int:
        """The last frame the window's clips use: the window is scored when it arrives."""
        return int(self.clips.max())


def window_frames(seconds: float, fps: float) -> int:
    """``seconds`` of a video at ``fps`` as a whole number of frames (at least 1)."""
    return max(1, round(seconds * fps))


def plan_windows(frame_count: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The windows [start, end) of a video of ``frame_count`` frames, in frames (module rules).

    Windows of ``window`` frames start every ``stride`` frames; the one that would run past the
    end is moved back to end on the last frame, unless the window before already ends there. A
    video shorter than one window is one window, all of it.
    """
    if frame_count < 1 or window < 1 or stride < 1:
        raise ValueError(f"cannot plan windows: {frame_count} frames, {window=}, {stride=}")
    if frame_count <= window:
        return [(0, frame_count)]
    windows: list[tuple[int, int]] = []
    for start in range(0, frame_count, stride):
        start = min(start, frame_count - window)  # past the end: end on the last frame
        windows.append((start, start + window))
        if start + window == frame_count:  # the next one would only repeat this one
            break
    return windows


def window_clips(start: int, end: int, T: int, tau: int, K: int, sampling: str) -> np.ndarray:
    """int64 (K, T) frame indices of the K test clips of window [start, end): the ``test.sampling``
    rule applied to the window as to a video of ``end - start`` frames, shifted to ``start``."""
    return start + TEST_SAMPLERS[sampling](end - start, T, tau, K)


class WindowStream:
    """Frames in increasing index order → the views of the windows that use them → one score per
    window as soon as its last frame has arrived; ``indices_for`` and ``put`` are the callbacks of
    ``video.decode_clip``.

    Args:
        plan: frame count (the reader's) → the windows, in order of their first frame.
        new_views: window → an empty views builder (``transforms.EvalViews``: ``put``,
            ``result``).
        score: (window, the builder's result) → class probabilities (K,).
        on_scored: (windows scored, windows) after each window, for a progress bar.
    """

    def __init__(
        self,
        plan: Callable[[int], list[Window]],
        new_views: Callable[[Window], object],
        score: Callable[[Window, object], torch.Tensor],
        on_scored: Callable[[int, int], None] = lambda done, total: None,
    ) -> None:
        self.plan, self.new_views, self.score, self.on_scored = plan, new_views, score, on_scored
        self.windows: list[Window] = []
        self.needed = np.empty(0, np.int64)
        self.length = 0
        self.max_open = 0  # the most windows holding views at once (the memory bound)
        self._reset()

    def _reset(self) -> None:
        self.scores: dict[int, torch.Tensor] = {}  # window number → probabilities (K,)
        self.open: dict[int, object] = {}  # window number → its views, being filled
        self.next = 0  # the first window not opened yet
        self.previous = -1  # the frame handed over last

    def indices_for(self, length: int) -> np.ndarray:
        """Plan the windows of a video of ``length`` frames; every frame their clips use, once,
        sorted (int64 (U,))."""
        self.length = length
        self.windows = self.plan(length)
        self.needed = np.unique(np.concatenate([w.clips.reshape(-1) for w in self.windows]))
        self._reset()  # a reader that falls back to another plans again
        return self.needed

    def put(self, frame, slots: list[int]) -> None:
        """Frame ``needed[slots[0]]`` into the windows that use it; score the windows it ends."""
        index = int(self.needed[slots[0]])
        if index <= self.previous:  # decode_clip's second pass after a failed seek: start over
            self._reset()
        self.previous = index
        while self.next < len(self.windows) and self.windows[self.next].first <= index:
            self.open[self.next] = self.new_views(self.windows[self.next])
            self.next += 1
        self.max_open = max(self.max_open, len(self.open))
        for n in list(self.open):
            window = self.windows[n]
            where = np.flatnonzero(window.clips.reshape(-1) == index)  # slots k * T + t
            if where.size:
                self.open[n].put(frame, where.tolist())
            if index == window.last:
                self.scores[n] = self.score(window, self.open.pop(n).result())
                self.on_scored(len(self.scores), len(self.windows))

    def results(self) -> list[torch.Tensor]:
        """The probabilities (K,) of every window, in window order, once the decode is done."""
        if len(self.scores) != len(self.windows):  # decode_clip raises first: a safety net
            raise RuntimeError(f"{len(self.windows) - len(self.scores)} windows were not scored")
        return [self.scores[n] for n in range(len(self.windows))]
