"""Predictions over time for long videos: ``predict --window SECONDS --stride SECONDS``.

Every window is scored as ``test`` scores a video (the checkpoint's ``test.num_clips`` ×
``test.num_crops`` views, ``test.sampling``, frames, interval, scale and crop, all applied inside
the window), and the file is decoded once, in frame order::

    video ─probe_video─▶ fps; frame count ─plan_windows─▶ windows [start, end) in frames
      each window ─window_clips─▶ its K clips × T frame indices, all inside it
    decode_clip(the union of those frames): each frame decoded and handed over once
      ─▶ WindowStream.put: into the views of every open window that uses the frame; a window
         opens at its first frame, is scored at its last (view_scores: softmax averaged over
         its views) and freed
      ─▶ VideoWindows: one WindowPrediction (start s, end s, top-k) per window, the top-k of the
         windows' mean, the label timeline

Memory: only windows between their first and last frame hold views, at most ⌈window / stride⌉ + 1
of them whatever the length of the file (10 × 3 views of 8 × 224² are 36 MB a window); the decord
fallback reads in batches (``video.DECORD_BATCH``), and the C heap is trimmed after every window
(``_return_free_memory``). Holding every window of a 10-minute video at 4 s / 2 s would take
299 × 36 MB = 10.8 GB.

Rules for the edge cases (README "Long videos"):

* **fps** comes from each file (``probe_video``: the stream's average rate, 25 when the header has
  none). Window and stride become ``round(seconds × fps)`` frames (at least 1); a time printed is
  frame / fps, so a variable-frame-rate file gets times on its average rate.
* **Windows** start at 0, stride, 2 × stride, ... A window that would run past the end is moved
  back to end on the last frame (the tail is scored by a full-length window off the stride grid),
  unless the window before it already ends there.
* **A video shorter than one window** is one window, the whole video: what plain ``predict``
  scores.
* **A window shorter than one clip span** ((T − 1) × τ + 1 frames): its clips loop inside the
  window, the test rule for a short video (sampling.py), so no clip sees frames of another
  window; logged once.
* **stride > window** leaves gaps between the windows: their frames are never converted or
  scored, and the timeline has holes there.
* **Timeline**: each window owns the time from its start to the next window's start (at most to
  its own end); consecutive windows with the same top-1 label make one segment.
* **Summary** (``VideoWindows.labels``): the top-k of the windows' probabilities averaged, every
  window weighing the same.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn

from data_prep.files import atomic_open, write_json
from data_prep.lists import clip_span
from videoglore.config import Config
from videoglore.data import build_dataset
from videoglore.data.video import decode_clip
from videoglore.data.windows import (
    Window,
    WindowStream,
    plan_windows,
    window_clips,
    window_frames,
)
from videoglore.engine.forward import FastPath
from videoglore.engine.inference import model_for_prediction, probed_record, view_scores
from videoglore.engine.predictions import check_output_path
from videoglore.errors import ConfigError, VideoError
from videoglore.threads import torch_threads

log = logging.getLogger(__name__)

Labels = list[tuple[str, float]]  # (label, probability), best first


@dataclass
class WindowPrediction:
    """The top-k labels of one window; times in seconds, ``end`` exclusive."""

    start: float
    end: float
    labels: Labels


@dataclass
class Segment:
    """A stretch of the timeline, in seconds, over which the windows' top-1 label is ``label``."""

    start: float
    end: float
    label: str


@dataclass
class VideoWindows:
    """The windows of one video, best labels first, or why it has none."""

    video: str
    windows: list[WindowPrediction] = field(default_factory=list)
    labels: Labels = field(default_factory=list)  # top-k of the windows' mean probabilities
    timeline: list[Segment] = field(default_factory=list)
    fps: float = 0.0
    frames: int = 0  # the frame count the reader went by
    error: str = ""  # one line; "" when the video was scored


def check_window_arguments(window: float, stride: float | None, topk: int) -> None:
    """Raise ConfigError for a window or stride that is not a positive number of seconds, or
    ``topk`` < 1, before any work."""
    if topk < 1:
        raise ConfigError(f"predict --topk must be >= 1, got {topk}")
    for name, seconds in (("--window", window), ("--stride", stride)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"predict {name} must be a positive number of seconds, got {seconds}")


@torch.no_grad()
def predict_windows(
    videos: list[str],
    checkpoint: str | Path,
    window: float,
    stride: float | None = None,
    topk: int = 5,
    device: str | None = None,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = False,
) -> Iterator[VideoWindows]:
    """Top-``topk`` labels of every ``window`` seconds of each video, a window every ``stride``
    seconds (default: ``window``, no overlap), yielded one video at a time (a bad file gives a
    VideoWindows with ``error``). The model, classes and settings (``device``, ``config``,
    ``overrides``) are those plain ``inference.predict`` would use.

    ``progress``: a tqdm bar of the windows of each video on stderr.

    Raises:
        ConfigError: a window or stride that is not a positive number, ``topk`` < 1.
        CheckpointError: the checkpoint is missing, corrupt, refused, or does not fit.
    """
    stride = window if stride is None else stride
    check_window_arguments(window, stride, topk)
    model, classes, cfg, dev, fast = model_for_prediction(checkpoint, device, config, overrides)
    scorer = _Scorer(model, classes, cfg, dev, fast, topk)
    with torch_threads(cfg.runtime.threads):
        for video in videos:
            try:
                yield scorer.video_windows(video, window, stride, progress)
            except VideoError as exc:
                yield VideoWindows(video, error=str(exc))


@dataclass
class _Scorer:
    """What scoring a window needs, gathered once per call of ``predict_windows``."""

    model: nn.Module
    classes: list[str]
    cfg: Config
    device: torch.device
    fast: FastPath
    topk: int
    warned_short: bool = False

    def top(self, probs: torch.Tensor) -> Labels:
        top = probs.topk(min(self.topk, len(probs)))
        names = [self.classes[c] for c in top.indices.tolist()]
        return list(zip(names, top.values.tolist(), strict=True))

    def video_windows(self, video: str, window: float, stride: float, progress: bool):
        record = probed_record(video)  # VideoError naming the file
        dataset = build_dataset(self.cfg, "test", records=[record])
        T, tau, K = dataset.num_frames, dataset.frame_interval, dataset.num_clips
        fps = record.fps
        size, step = window_frames(window, fps), window_frames(stride, fps)
        self.warn_if_shorter_than_a_clip(video, size, fps, clip_span(T, tau))

        def plan(length: int) -> list[Window]:
            spans = plan_windows(length, size, step)
            rule = dataset.test_sampling
            return [Window(a, b, window_clips(a, b, T, tau, K, rule)) for a, b in spans]

        def score(w: Window, views) -> torch.Tensor:
            where = f"{video} (window {w.start / fps:.2f}-{w.end / fps:.2f} s)"
            probs = view_scores(self.model, views, self.cfg, self.device, self.fast, where)
            _return_free_memory()
            return probs

        with _progress_bar(Path(video).name, progress) as show:
            stream = WindowStream(plan, lambda w: dataset.empty_eval_views(record), score, show)
            decode_clip(video, stream.indices_for, stream.put, dataset.reader, record.rotation)
        probs = stream.results()
        tops = [self.top(p) for p in probs]
        return VideoWindows(
            video,
            [
                WindowPrediction(w.start / fps, w.end / fps, top)
                for w, top in zip(stream.windows, tops, strict=True)
            ],
            self.top(torch.stack(probs).mean(dim=0)),
            timeline(stream.windows, [top[0][0] for top in tops], fps),
            fps,
            stream.length,
        )

    def warn_if_shorter_than_a_clip(self, video: str, size: int, fps: float, span: int) -> None:
        if size < span and not self.warned_short:
            self.warned_short = True
            seconds = f"{span} frames, {span / fps:.2f} s"
            log.warning(
                "%s: a window of %d frames at %g fps is shorter than one clip of the model (%s): "
                "its clips loop inside each window",
                video,
                size,
                fps,
                seconds,
            )


def _return_free_memory() -> None:
    """Hand the free pages of the C heap back to the OS (glibc ``malloc_trim``; elsewhere
    nothing), once per window.

    Every window allocates and frees the same few hundred MB (its views, the network's
    activations). Without this, glibc's heap fragments and the process grows with the number
    of windows: on a 10-minute video at 4 s / 2 s, 754 MB resident between windows after 20
    windows, 946 MB after 299, peak 1268 MB; with it, 598-599 MB between windows over the 160
    windows traced and a 1024-1026 MB peak over all 299 (benchmarks/windows/memory.py). A trim took
    15 µs in a small process: nothing next to a window's forward.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: musl, macOS, Windows
        return None


@contextmanager
def _progress_bar(name: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar of one video's windows on stderr; yields its ``on_scored(done, total)``."""
    from tqdm import tqdm

    with tqdm(desc=name, unit="window", disable=not enabled, leave=False) as bar:

        def show(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        yield show


def timeline(windows: list[Window], labels: list[str], fps: float) -> list[Segment]:
    """Segments of equal top-1 ``labels`` (one per window), in seconds (module rules): each
    window owns its start up to the next window's start, at most its own end."""
    segments: list[list] = []  # [start frame, end frame, label]
    for n, (w, label) in enumerate(zip(windows, labels, strict=True)):
        end = min(w.end, windows[n + 1].start) if n + 1 < len(windows) else w.end
        if segments and segments[-1][2] == label and segments[-1][1] == w.start:
            segments[-1][1] = end
        else:
            segments.append([w.start, end, label])
    return [Segment(a / fps, b / fps, label) for a, b, label in segments]


def write_window_predictions(path: str | Path, results: list[VideoWindows]) -> Path:
    """Write the windows as CSV or JSON (by the suffix of ``path``), atomically.

    CSV: ``video, window, start, end, error, top1, p1, ...``: one row per window (numbered from
    0, times in seconds), then the video's summary row (``window`` = ``mean``: the top-k of the
    windows' mean over the whole video); a failed video is one row with ``error``. JSON: one
    object per video with its windows, summary labels and timeline.
    """
    check_output_path(path)
    if Path(path).suffix.lower() == ".json":
        return write_json(path, [_as_json(r) for r in results])
    k = max((len(w.labels) for r in results for w in r.windows), default=0)
    header = ["video", "window", "start", "end", "error"]
    header += [f"{kind}{r}" for r in range(1, k + 1) for kind in ("top", "p")]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in results:
            if r.error:
                writer.writerow([r.video, "", "", "", r.error, *[""] * (2 * k)])
                continue
            rows = [(str(n), w.start, w.end, w.labels) for n, w in enumerate(r.windows)]
            rows.append(("mean", 0.0, r.frames / r.fps, r.labels))
            for number, start, end, labels in rows:
                cells = [cell for name, prob in labels for cell in (name, f"{prob:.4f}")]
                padding = [""] * (2 * k - len(cells))
                writer.writerow(
                    [r.video, number, f"{start:.3f}", f"{end:.3f}", "", *cells, *padding]
                )
    return Path(path)


def _labels_json(labels: Labels) -> list[dict]:
    return [{"label": name, "probability": prob} for name, prob in labels]


def _as_json(r: VideoWindows) -> dict:
    return {
        "video": r.video,
        "error": r.error,
        "fps": r.fps,
        "frames": r.frames,
        "windows": [
            {"start": round(w.start, 6), "end": round(w.end, 6), "labels": _labels_json(w.labels)}
            for w in r.windows
        ],
        "labels": _labels_json(r.labels),
        "timeline": [
            {"start": round(s.start, 6), "end": round(s.end, 6), "label": s.label}
            for s in r.timeline
        ],
    }
