"""Export a checkpoint's network for serving, as ONNX (ONNX Runtime, no torch) or TorchScript.

    checkpoint ─inference.load_model_from_checkpoint─▶ network in eval mode, CPU, float32
      onnx:        torch.onnx.export(dynamo=True) ─▶ ModelProto, metadata_props["videoglore"]
      torchscript: torch.jit.trace ─▶ archive holding videoglore.json, and FILE.json beside it
      ─check: exported vs eager logits on random clips of another batch size─▶ atomic write

The exported network takes normalised clips float32 (N, 3, T, S, S), N free, and returns logits
(N, classes); the metadata (``onnx_predict.ExportInfo``) carries the class names, the clip (T, τ,
S), the normalisation and the test protocol (test_scale, K clips, C crops, sampling), so that
``predict --model FILE.onnx`` scores a video as ``test`` does, without the checkpoint or torch.

Which exporter (torch 2.14): ``torch.onnx.export(dynamo=True)``, the default since torch 2.9. It
captures the graph with ``torch.export`` and translates it with onnxscript (an extra dependency);
GloRe's batched matmuls, reshapes over T·H·W and the 3D (grouped) convolutions translate to
MatMul / Reshape / Conv, and the batch axis stays symbolic. The TorchScript-based exporter
(``dynamo=False``) also works and ran ~10× faster on the tiny test nets, but torch 2.14 warns it is
deprecated, as it does for ``torch.jit`` itself: ``--format torchscript`` is kept for
C++/LibTorch users, with those warnings silenced here and one log line instead.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_prep.files import atomic_open, check_writable, write_json
from videoglore.config import Config
from videoglore.data.transforms import NORMALIZATIONS, normalize
from videoglore.engine.inference import load_model_from_checkpoint
from videoglore.engine.onnx_predict import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ExportInfo
from videoglore.errors import CheckpointError, ConfigError
from videoglore.models import model_name

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
OPSET = 18  # ONNX Runtime >= 1.14 runs it; pinned so the file does not change with torch
EXAMPLE_CLIPS, CHECK_CLIPS = 2, 1  # batch sizes traced and checked: the batch axis must be free
# max |exported - eager| / max |eager logit|; full-size ONNX exports measured 6e-7 to 1.4e-5
PARITY_TOLERANCE = 1e-4
TORCHSCRIPT_METADATA = f"{METADATA_KEY}.json"  # the extra file inside the TorchScript archive
# the exporter's helpers log every graph pass at INFO (hundreds of lines for one network)
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote and how closely the file reproduces the eager network."""

    path: Path
    sidecar: Path | None  # TorchScript: FILE.json with the metadata
    max_abs_diff: float  # max |exported - eager| over the check clips' logits
    logit_scale: float  # max |eager logit| on the same clips

    @property
    def relative_diff(self) -> float:
        return relative(self.max_abs_diff, self.logit_scale)


def relative(diff: float, scale: float) -> float:
    """``diff`` as a fraction of the logit scale (``diff`` itself when every logit is 0)."""
    return diff / scale if scale > 0 else diff


def export_info(cfg: Config, classes: list[str]) -> ExportInfo:
    """The metadata of a network trained (and tested) with ``cfg``."""
    mean, std = NORMALIZATIONS[cfg.data.normalization]
    return ExportInfo(
        model=model_name(cfg.model),
        classes=list(classes),
        num_frames=cfg.data.num_frames,
        frame_interval=cfg.data.frame_interval,
        crop_size=cfg.data.crop_size,
        normalization=cfg.data.normalization,
        mean=tuple(mean),
        std=tuple(std),
        test_scale=cfg.data.test_scale,
        num_clips=cfg.test.num_clips,
        num_crops=cfg.test.num_crops,
        sampling=cfg.test.sampling,
    )


def example_clips(info: ExportInfo, n: int, seed: int) -> torch.Tensor:
    """``n`` normalised clips of random pixels, float32 (n, 3, T, S, S): the model's input."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, 3, info.num_frames, info.crop_size, info.crop_size)
    pixels = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return normalize(pixels, info.normalization)


def export_model(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> ExportResult:
    """Write the network of ``checkpoint`` as ``fmt`` ("onnx" or "torchscript") to ``out``,
    with the settings ``predict`` would use (``config``, ``overrides``:
    ``inference.load_model_from_checkpoint``; a weights-only file needs ``config``).

    Nothing is written unless the exported network's logits on random clips (of a batch size
    other than the one traced) are within ``PARITY_TOLERANCE`` of the eager network's.

    Raises:
        ConfigError: unknown ``fmt``, or the packages of the ``export`` extra are missing.
        CheckpointError: the checkpoint cannot be read, or the export does not reproduce it.
        OutputError: ``out`` cannot be written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export --format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        _require("onnx", "onnxscript", "onnxruntime")  # before reading a large checkpoint
    out = Path(out)
    check_writable(out)  # before the export, which takes a minute at full size
    loaded = load_model_from_checkpoint(checkpoint, config, overrides)
    model = loaded.model.float().eval()
    info = export_info(loaded.cfg, loaded.classes)
    example = example_clips(info, EXAMPLE_CLIPS, seed=0)
    check = example_clips(info, CHECK_CLIPS, seed=1)
    if fmt == "onnx":
        data, run = _onnx_bytes(model, example, info)
    else:
        data, run = _torchscript_bytes(model, example, info)
    diff, scale = parity(model, run, check)
    if not np.isfinite(scale):
        raise CheckpointError(
            f"{checkpoint}: the model's own logits on random clips are not finite (NaN/Inf), "
            f"so its export cannot be checked; nothing written"
        )
    if not relative(diff, scale) <= PARITY_TOLERANCE:  # also catches NaN
        raise CheckpointError(
            f"{checkpoint}: the {fmt} export gives logits {diff:.3g} away from the model's "
            f"(max |logit| {scale:.3g}, tolerance {PARITY_TOLERANCE:g} of it); nothing written"
        )
    with atomic_open(out, "wb") as f:
        f.write(data)
    sidecar = None
    if fmt == "torchscript":
        sidecar = write_json(out.with_name(out.name + ".json"), info.to_dict())
    log.info("exported %s (%s) to %s", checkpoint, info.model, out)
    return ExportResult(out, sidecar, diff, scale)


@torch.no_grad()
def parity(model: nn.Module, run, clips: torch.Tensor) -> tuple[float, float]:
    """(max |run(clips) - model(clips)|, max |model(clips)|) over the logits (N, K)."""
    reference = model(clips)
    exported = torch.as_tensor(run(clips))
    return float((exported - reference).abs().max()), float(reference.abs().max())


def _onnx_bytes(model: nn.Module, example: torch.Tensor, info: ExportInfo):
    """The serialised ONNX model with its metadata, and a function running it (ONNX Runtime)."""
    import onnxruntime as ort

    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), _quiet(EXPORTER_LOGGERS), _cudnn_tf32_defaults():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info.to_dict())
    proto.doc_string = f"videoglore {info.model}: normalised clips (N, 3, T, S, S) -> logits"
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])

    def run(clips: torch.Tensor):
        return session.run([OUTPUT_NAME], {INPUT_NAME: clips.numpy()})[0]

    return data, run


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, info: ExportInfo):
    """The saved TorchScript archive (metadata inside), and its loaded module."""
    log.info("TorchScript is deprecated in torch >= 2.9 (torch.jit warns); --format onnx is not")
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
        extra = {TORCHSCRIPT_METADATA: json.dumps(info.to_dict())}
        torch.jit.save(traced, buffer, _extra_files=extra)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    return buffer.getvalue(), loaded


def _require(*modules: str) -> None:
    """ConfigError naming the first of ``modules`` that cannot be imported."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(
                f"export --format onnx needs {name}: pip install 'videoglore[export]'"
            ) from None


@contextlib.contextmanager
def _cudnn_tf32_defaults() -> Iterator[None]:
    """cuDNN's conv and RNN TF32 precisions at their defaults inside the block.

    ``torch.export`` reads cuDNN's legacy ``allow_tf32`` flag, which raises in torch 2.14 once
    the new per-operator API has set conv to anything but the default (``benchmarks/speed``
    sets it, as torch's TF32 notes advise users to do) — even for a CPU export, where the flags
    mean nothing. Restored afterwards.
    """
    cudnn = torch.backends.cudnn
    if not hasattr(cudnn, "conv") or not hasattr(cudnn.conv, "fp32_precision"):  # torch < 2.9
        yield
        return
    saved = cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision
    cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "tf32"
    try:
        yield
    finally:
        cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """The loggers ``names`` at WARNING or above inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def read_torchscript_info(path: str | Path) -> ExportInfo:
    """The metadata stored inside a TorchScript file written by ``export_model``."""
    extra = {TORCHSCRIPT_METADATA: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        try:
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot load as TorchScript ({exc})") from None
    return ExportInfo.from_dict(json.loads(extra[TORCHSCRIPT_METADATA]), str(path))
