"""Kinetics-like source videos for the prepare benchmark: what a YouTube download looks like.

A Kinetics clip is a 10 s cut of a YouTube video, downloaded as H.264 + AAC in an mp4 at 360p or
720p, 30 fps, encoded with a long GOP, B-frames and scene-cut keyframes. We write the same
structure with libx264's defaults (preset medium: 3 B-frames, scenecut 40, keyint 250, crf 23)
and a stereo AAC track, over content that behaves like camera footage for the encoder: smooth
shading with fine texture that pans, a few moving shapes, sensor noise, and a hard cut to a new
scene every ~2.5 s. Every file is a function of (size, seconds, index); each is written once
into a cache folder.

    scene (seeded) ─ pan + shapes + noise ─▶ libx264 (defaults) ┐
    tone + noise ──────────────────────────▶ aac (stereo)        ├─▶ mp4 (atomic)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from data_prep.codec import mp4_output

FPS = 30
SCENE_SECONDS = 2.5  # a hard cut every 2.5 s: x264 puts a keyframe at each
AUDIO_RATE = 44100


def source_folder(cache: Path, width: int, height: int, seconds: float) -> Path:
    """The class-folder tree (one class, ``clips``) of one source size: ``--folder`` input."""
    return cache / f"kinetics_like_{width}x{height}_{seconds:g}s"


def source_path(cache: Path, width: int, height: int, seconds: float, index: int) -> Path:
    return source_folder(cache, width, height, seconds) / "clips" / f"clip_{index:03d}.mp4"


def write_source(path: Path, width: int, height: int, seconds: float, index: int) -> Path:
    """Write one source (if not there yet); returns ``path``."""
    if path.is_file():
        return path
    import av

    frames = round(seconds * FPS)
    rng = np.random.default_rng([width, height, index])
    with mp4_output(path) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1  # the same bytes on every machine
        video.options = {"crf": "23", "preset": "medium"}  # x264 defaults: B-frames, scenecut
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        scene = None
        for t in range(frames):
            if t % round(SCENE_SECONDS * FPS) == 0:
                scene = _Scene(rng, width, height)
            image = av.VideoFrame.from_ndarray(scene.frame(t, rng), format="rgb24")
            container.mux(video.encode(image))
        container.mux(video.encode())
        for packet in _audio_packets(audio, seconds, rng):
            container.mux(packet)
    return path


class _Scene:
    """One shot: a shaded, textured background larger than the frame (panned across) and a few
    moving discs."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.width, self.height = width, height
        big_w, big_h = width + width // 2, height + height // 4
        coarse = rng.uniform(0, 255, (big_h // 32 + 2, big_w // 32 + 2, 3))
        shade = _upsample(coarse, big_h, big_w)  # smooth light and colour
        grain = rng.normal(0, 18, (big_h // 2, big_w // 2, 1)).repeat(2, 0).repeat(2, 1)
        self.background = np.clip(shade + grain[:big_h, :big_w], 0, 255).astype(np.float32)
        self.pan = rng.uniform(-1.5, 1.5, 2) * width / 320  # pixels per frame
        self.discs = rng.uniform(0, 1, (3, 6))  # x, y, vx, vy, radius, brightness
        self.start = None

    def frame(self, t: int, rng: np.random.Generator) -> np.ndarray:
        if self.start is None:
            self.start = t
        dt = t - self.start
        big_h, big_w = self.background.shape[:2]
        x0 = int((big_w - self.width) / 2 + self.pan[0] * dt) % (big_w - self.width)
        y0 = int((big_h - self.height) / 2 + self.pan[1] * dt) % (big_h - self.height)
        image = self.background[y0 : y0 + self.height, x0 : x0 + self.width].copy()
        ys, xs = np.ogrid[: self.height, : self.width]
        for x, y, vx, vy, radius, light in self.discs:
            cx = (x + (vx - 0.5) * dt / 60) % 1 * self.width
            cy = (y + (vy - 0.5) * dt / 60) % 1 * self.height
            r = (0.04 + 0.08 * radius) * self.height
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < r * r] = 60 + 190 * light
        image += rng.normal(0, 3, (self.height, self.width, 1)).astype(np.float32)  # sensor noise
        return np.clip(image, 0, 255).astype(np.uint8)


def _upsample(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w, 3) grid to (height, width, 3)."""
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _audio_packets(stream, seconds: float, rng: np.random.Generator):
    """A tone with noise, stereo, in the encoder's frame size; then the flush."""
    import av

    size, samples = stream.codec_context.frame_size or 1024, round(seconds * AUDIO_RATE)
    for start in range(0, samples, size):
        t = (start + np.arange(size)) / AUDIO_RATE
        tone = 0.2 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 0.02, size)
        frame = av.AudioFrame.from_ndarray(
            np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        frame.time_base = Fraction(1, AUDIO_RATE)
        yield from stream.encode(frame)
    yield from stream.encode(None)
