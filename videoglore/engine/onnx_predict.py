"""Top-k labels from an exported ONNX model (``run.py export``), with ONNX Runtime and no torch.

    FILE.onnx ─ONNX Runtime session; metadata_props["videoglore"] ─▶ ExportInfo: classes, clip
        (T, τ, S), normalisation, test protocol (test_scale, K clips, C crops, sampling)
    video ─probe_video─▶ frame count ─sampling.TEST_SAMPLERS[sampling]─▶ frame indices (K, T)
      ─video.decode_clip + transforms.EvalViews (what the test dataset runs)─▶ uint8 views
        (V, 3, T, S, S)
      ─normalize_views (numpy, the arithmetic of transforms.normalize)─▶ float32
      ─session─▶ logits (V, K) ─softmax, averaged over the V = K·C views─▶ Prediction

The views are the torch path's (``inference.predict``) by construction: the same sampler, decoder
and view builder, only the final ``torch.from_numpy`` is left out. This module, and everything it
imports (``data_prep``, ``videoglore.data.{sampling,video,transforms,pixels}``,
``engine.predictions``), runs without torch: a serving machine needs numpy, PyAV and onnxruntime.

``ExportInfo`` is also what ``export.py`` writes into the file: the one description of an
exported model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.codec import probe_video
from data_prep.errors import bounded_repr
from videoglore.data.sampling import TEST_SAMPLERS
from videoglore.data.transforms import CROP_COUNTS, EvalViews
from videoglore.data.video import decode_clip
from videoglore.engine.predictions import Prediction
from videoglore.errors import CheckpointError, ConfigError, VideoError

METADATA_KEY = "videoglore"  # the ONNX metadata_props entry (and TorchScript's extra file)
FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "clips", "logits"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ExportInfo:
    """What an exported model needs beside its weights to score a video as ``test`` does.

    The network takes normalised clips float32 (N, 3, num_frames, crop_size, crop_size) and
    returns logits (N, len(classes)); N is free.
    """

    model: str  # registry name, e.g. "r50_glore"
    classes: list[str]
    num_frames: int  # T
    frame_interval: int  # τ
    crop_size: int  # S
    normalization: str  # data.normalization
    mean: tuple[float, float, float]  # RGB, on the [0, 1] scale (transforms.NORMALIZATIONS)
    std: tuple[float, float, float]
    test_scale: int
    num_clips: int
    num_crops: int
    sampling: str  # test.sampling

    def to_dict(self) -> dict:
        """The JSON form stored in (or beside) the exported file."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "input": {"name": INPUT_NAME, "shape": ["N", 3, "T", "S", "S"], "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["N", "classes"], "dtype": "float32"},
            "classes": list(self.classes),
            "clip": {
                "num_frames": self.num_frames,
                "frame_interval": self.frame_interval,
                "crop_size": self.crop_size,
            },
            "normalization": {
                "name": self.normalization,
                "mean": list(self.mean),
                "std": list(self.std),
                "formula": "(x_uint8 - 255 * mean) / (255 * std), per RGB channel",
            },
            "protocol": {
                "test_scale": self.test_scale,
                "num_clips": self.num_clips,
                "num_crops": self.num_crops,
                "sampling": self.sampling,
            },
        }

    @classmethod
    def from_dict(cls, data: dict, source: str) -> ExportInfo:
        """Read ``to_dict``'s form; ``source`` names the file in errors.

        Raises:
            CheckpointError: a key is missing, has the wrong type or a value we cannot use.
        """
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise ValueError(f"format_version {bounded_repr(data['format_version'])}")
            clip, norm, protocol = data["clip"], data["normalization"], data["protocol"]
            info = cls(
                model=str(data["model"]),
                classes=[str(name) for name in data["classes"]],
                num_frames=int(clip["num_frames"]),
                frame_interval=int(clip["frame_interval"]),
                crop_size=int(clip["crop_size"]),
                normalization=str(norm["name"]),
                mean=tuple(float(v) for v in norm["mean"]),
                std=tuple(float(v) for v in norm["std"]),
                test_scale=int(protocol["test_scale"]),
                num_clips=int(protocol["num_clips"]),
                num_crops=int(protocol["num_crops"]),
                sampling=str(protocol["sampling"]),
            )
            info.check()
        except KeyError as exc:
            reason = f"no key {bounded_repr(exc.args[0])}"
        except (TypeError, ValueError) as exc:  # int("...") quotes the whole value: cut it
            reason = str(exc) if len(str(exc)) <= 200 else str(exc)[:197] + "..."
        else:
            return info
        raise CheckpointError(
            f"{source}: its videoglore metadata cannot be used ({reason}); export the "
            f"checkpoint again with this version (`run.py export`)"
        )

    def check(self) -> None:
        """Raise ValueError for values the view builders cannot use."""
        sizes = (self.num_frames, self.frame_interval, self.crop_size, self.num_clips)
        if min(sizes) < 1 or self.test_scale < self.crop_size:
            raise ValueError(f"clip {sizes[:3]}, num_clips or test_scale {self.test_scale}")
        if self.num_crops not in CROP_COUNTS:
            raise ValueError(f"num_crops {self.num_crops} is not one of {CROP_COUNTS}")
        if self.sampling not in TEST_SAMPLERS:
            raise ValueError(
                f"sampling {bounded_repr(self.sampling)} is not one of {', '.join(TEST_SAMPLERS)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std must be 3 values each, std > 0")


def normalize_views(views: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (V, 3, T, S, S) → float32, the arithmetic of ``transforms.normalize`` in numpy:
    (x - 255·mean) · 1 / (255·std), each factor rounded to float32 as torch does."""
    shape = (3, 1, 1, 1)
    mean_255 = np.asarray(mean, np.float32).reshape(shape) * np.float32(255)
    scale = np.float32(1) / (np.asarray(std, np.float32).reshape(shape) * np.float32(255))
    return (views.astype(np.float32) - mean_255) * scale


def softmax_mean(logits: np.ndarray) -> np.ndarray:
    """(V, K) logits → (K,) the views' softmax probabilities averaged (``aggregate_views``)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).mean(axis=0)


class OnnxVideoModel:
    """An exported ONNX model and its ``ExportInfo``, ready to score videos.

    Args:
        path: the ``.onnx`` file written by ``run.py export``.
        device: "cpu", "cuda" (needs the CUDA build of onnxruntime) or "auto" (CUDA if there).

    Raises:
        ConfigError: onnxruntime is not installed, or ``device`` is not available.
        CheckpointError: the file is missing, not an ONNX model, or not one of ours.
    """

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = Path(path)
        self.session = _open_session(self.path, device)
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise CheckpointError(
                f"{self.path}: an ONNX model without videoglore metadata (classes, clip, "
                f"protocol); export the checkpoint with `run.py export CHECKPOINT --format onnx`"
            )
        try:
            data = json.loads(meta[METADATA_KEY])
        except ValueError:
            raise CheckpointError(f"{self.path}: its videoglore metadata is not JSON") from None
        self.info = ExportInfo.from_dict(data, str(self.path))
        self._check_input()

    def _check_input(self) -> None:
        (clips,) = self.session.get_inputs()
        info = self.info
        expected = [3, info.num_frames, info.crop_size, info.crop_size]
        if clips.name != INPUT_NAME or list(clips.shape[1:]) != expected:
            raise CheckpointError(
                f"{self.path}: input {clips.name} {clips.shape} does not fit its metadata "
                f"(clips [N, {', '.join(map(str, expected))}]); export it again"
            )

    def views(self, video: str | Path) -> np.ndarray:
        """The test views of ``video``: uint8 (K*C, 3, T, S, S), view k*C + c = clip k, crop c.

        Raises:
            VideoError: naming the file when it cannot be read.
        """
        info = self.info
        T, tau, K = info.num_frames, info.frame_interval, info.num_clips
        rotation = probe_video(video).rotation  # VideoError naming the file, as the torch path
        builder = EvalViews(
            K, T, info.test_scale, info.crop_size, info.num_crops, rotation=rotation
        )
        sample = TEST_SAMPLERS[info.sampling]
        decode_clip(video, lambda n: sample(n, T, tau, K), builder.put, rotation=rotation)
        return builder.array()

    def logits(self, clips: np.ndarray) -> np.ndarray:
        """float32 (N, K) logits of normalised clips float32 (N, 3, T, S, S)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: clips})[0]

    def video_scores(self, video: str | Path) -> np.ndarray:
        """(K,) class probabilities of ``video``, softmax averaged over its views."""
        views = normalize_views(self.views(video), self.info.mean, self.info.std)
        logits = self.logits(views)  # (V, K)
        if not np.isfinite(logits).all():
            raise VideoError(f"{video}: the model gives non-finite scores (NaN/Inf) for this video")
        return softmax_mean(logits)


def predict_onnx(
    videos: list[str], model: str | Path, topk: int = 5, device: str = "auto"
) -> Iterator[Prediction]:
    """Top-``topk`` labels per video with an exported ONNX model, one video at a time (a bad
    file gives a Prediction with ``error``); the ONNX twin of ``inference.predict``.

    Raises:
        ConfigError: ``topk`` < 1 or a bad ``device``, before any work.
        CheckpointError: the model file is missing, not ONNX or not exported by us.
    """
    if topk < 1:
        raise ConfigError(f"predict --topk must be >= 1, got {topk}")
    net = OnnxVideoModel(model, device)
    classes = net.info.classes
    for video in videos:
        try:
            probs = net.video_scores(video)  # (K,)
        except VideoError as exc:
            yield Prediction(video, error=str(exc))
            continue
        top = np.argsort(-probs, kind="stable")[: min(topk, len(probs))]
        yield Prediction(video, [(classes[c], float(probs[c])) for c in top])


def _open_session(path: Path, device: str):
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "predict --model needs onnxruntime: pip install 'videoglore[export]'"
        ) from None
    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise ConfigError(
            "--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
        )
    providers = ["CUDAExecutionProvider"] if cuda and device != "cpu" else []
    providers.append("CPUExecutionProvider")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own InvalidProtobuf, Fail, ... types
        reason = bounded_repr(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise CheckpointError(f"{path}: cannot load as an ONNX model ({reason})") from None
