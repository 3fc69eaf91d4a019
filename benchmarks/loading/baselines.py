"""The loaders ours is measured against: today's reader (before issue 13) and the references.

All are ``VideoClipDataset`` subclasses that replace ``train_clip`` only (same sampler, same
(seed, epoch, index) draws, same DataLoader), and all transform with ``torch_train_transform``:
the transform of the earlier releases, whole frames to RGB, ``np.stack`` of the frames,
torch's antialiased bilinear resize of the crop box, permute to (3, T, S, S)::

    today (pyav)         video.decode_clip (same decoding as ours) ─▶ to_ndarray("rgb24") per
                         kept frame with PyAV's default swscale threads (0 = one per core)
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
    """Our PyAV decoding with the earlier conversion and transform (the reader before issue 13)."""

    swscale_threads = 0  # PyAV's default: one swscale thread per core

    def train_clip(self, record: VideoRecord, rng: np.random.Generator) -> torch.Tensor:
        T, tau = self.num_frames, self.frame_interval
        found: dict[int, np.ndarray] = {}

        def put(frame, slots: list[int]) -> None:
            if not isinstance(frame, np.ndarray):
                frame = frame.to_ndarray(format="rgb24", threads=self.swscale_threads)
            found.update((slot, frame) for slot in slots)

        self.decode(record, lambda n: sampling.sample_train_clip(n, T, tau, rng), put)
        frames = np.stack([found[slot] for slot in sorted(found)])  # (T, H, W, 3)
        return torch_train_transform(frames, self.train_scale, self.crop_size, self.flip, rng)


class TodayThreads1ClipDataset(TodayClipDataset):
    """Today's reader with swscale single-threaded (step 1 alone)."""

    swscale_threads = 1


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
        indices = sampling.sample_train_clip(record.num_frames, T, tau, rng)
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
