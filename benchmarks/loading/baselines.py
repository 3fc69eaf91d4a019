"""The loaders ours is measured against: today's reader (before issue 13) and the references.

All are ``VideoClipDataset`` subclasses that replace ``train_clip`` only (same sampler, same
(seed, epoch, index) draws, same DataLoader), and all transform with ``torch_train_transform``:
the transform of the earlier releases, whole frames to RGB, ``np.stack`` of the frames,
torch's antialiased bilinear resize of the crop box, permute to (3, T, S, S)::

    today (pyav)         the PyAV reader of main before issue 13 (``read_clip_today``): packets
                         from the start of the file, decode from the keyframe before each kept
                         frame, to_ndarray("rgb24") per kept frame with PyAV's default swscale
                         threads (0 = one per core)
    today + threads=1    the same with swscale single-threaded (issue 13, step 1 alone)
    reference            torchvision ``read_video(start, end)`` / PySlowFast ``pyav_decode``: seek
                         to the keyframe before the clip start, decode to the clip end, convert
                         EVERY frame of the span to RGB, keep T of them
    PyAV kept-only       the reference converting only the T kept frames (a stronger baseline)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.lists import VideoRecord
from videoglore.data import sampling
from videoglore.data.dataset import VideoClipDataset
from videoglore.data.transforms import short_side_size
from videoglore.data.video import read_clip


def torch_train_transform(frames, scale_range, crop_size: int, flip: bool, rng) -> torch.Tensor:
    """The earlier train transform: uint8 (T, H, W, 3) → (3, T, S, S), same draws as ours."""
    x = torch.as_tensor(frames).permute(0, 3, 1, 2)  # (T, 3, H, W), channels-last memory
    height, width = x.shape[-2:]
    lo, hi = (max(int(v), crop_size) for v in scale_range)
    short = int(rng.integers(lo, max(lo, hi) + 1))
    scaled_h, scaled_w = short_side_size(height, width, short)
    top = int(rng.integers(0, scaled_h - crop_size + 1))
    left = int(rng.integers(0, scaled_w - crop_size + 1))
    do_flip = bool(flip and rng.random() < 0.5)
    box_h = min(height, max(1, round(crop_size * height / scaled_h)))
    box_w = min(width, max(1, round(crop_size * width / scaled_w)))
    y0 = min(round(top * height / scaled_h), height - box_h)
    x0 = min(round(left * width / scaled_w), width - box_w)
    x = _resize(x[:, :, y0 : y0 + box_h, x0 : x0 + box_w], (crop_size, crop_size))
    x = x.permute(1, 0, 2, 3).contiguous()  # (3, T, S, S)
    return x.flip(-1) if do_flip else x


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)


class TodayClipDataset(VideoClipDataset):
    """The reader and transform before issue 13 (PyAV reader; decord if ``reader="decord"``)."""

    swscale_threads = 0  # PyAV's default: one swscale thread per core

    def train_clip(self, record: VideoRecord, rng: np.random.Generator) -> torch.Tensor:
        T, tau = self.num_frames, self.frame_interval
        indices_for = lambda n: sampling.sample_train_clip(n, T, tau, rng)  # noqa: E731
        if self.reader == "pyav":
            frames = read_clip_today(record.path, indices_for, self.swscale_threads)
        else:
            frames = read_clip(record.path, indices_for, self.reader)
        return torch_train_transform(frames, self.train_scale, self.crop_size, self.flip, rng)


class TodayThreads1ClipDataset(TodayClipDataset):
    """Today's reader with swscale single-threaded (step 1 alone)."""

    swscale_threads = 1


def read_clip_today(path: str, indices_for, swscale_threads: int) -> np.ndarray:
    """main's PyAV reader before issue 13, kept as the benchmark's "today" (B-frames: error).

    One pass over the packets from the start; decode from the keyframe before each needed
    frame, convert each needed frame to a whole RGB array, ``np.stack`` and index the copies.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        codec = stream.codec_context
        indices = np.asarray(indices_for(stream.frames), dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        wanted, last = set(unique.tolist()), int(unique[-1])
        found: dict[int, np.ndarray] = {}
        wanted_pts: dict[int, int] = {}
        buffered: list = []
        position = -1

        def convert(frames) -> None:
            for frame in frames:
                if frame.pts in wanted_pts:
                    rgb = frame.to_ndarray(format="rgb24", threads=swscale_threads)
                    found[wanted_pts[frame.pts]] = rgb

        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            position += 1
            if position > last:
                if position > last + 16:  # the reorder check of that reader
                    break
                continue
            if packet.is_keyframe:
                buffered = []
            buffered.append(packet)
            if position in wanted:
                wanted_pts[packet.pts] = position
                for pending in buffered:
                    convert(codec.decode(pending))
                buffered = []
        if len(found) < len(wanted_pts):
            convert(codec.decode(None))
    frames = np.stack([found[i] for i in unique.tolist()])  # (U, H, W, 3)
    return frames[inverse.reshape(-1)]


class ReferenceClipDataset(VideoClipDataset):
    """Frames read as torchvision ``read_video(start, end)`` and PySlowFast's ``pyav_decode`` do.

    Both seek (backward) to the keyframe before the clip's start time, decode forward until the
    clip's end time and turn every decoded frame of the span into an RGB array
    (``frame.to_rgb().to_ndarray()``); the clip's T frames are picked afterwards. The released
    GloRe code (OpenCV ``VideoIter``) likewise converts every frame it reads.
    """

    convert_all = True

    def train_clip(self, record: VideoRecord, rng: np.random.Generator) -> torch.Tensor:
        import av

        T, tau = self.num_frames, self.frame_interval
        indices = sampling.sample_train_clip(record.frame_count, T, tau, rng)
        first, last = int(indices.min()), int(indices.max())
        wanted = set(indices.tolist())
        span: dict[int, np.ndarray] = {}
        with av.open(record.path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per worker, as our readers
            rate = float(stream.average_rate)
            container.seek(int(first / rate / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                position = round(float(frame.pts * stream.time_base) * rate)
                if position >= first and (self.convert_all or position in wanted):
                    span[position] = frame.to_ndarray(format="rgb24", threads=1)
                if position >= last:
                    break
        frames = np.stack([span[i] for i in indices.tolist()])
        return torch_train_transform(frames, self.train_scale, self.crop_size, self.flip, rng)


class KeptOnlyClipDataset(ReferenceClipDataset):
    """The reference decoding, converting only the T kept frames (a stronger baseline)."""

    convert_all = False
