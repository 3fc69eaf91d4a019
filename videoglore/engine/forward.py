"""normalize → autocast → forward, written once: training, validation, testing, prediction and
the speed benchmark all call ``forward_batch`` (testing and prediction through ``forward_views``,
its chunks of test views); ``place_model`` puts a model on the device in the fast path's memory
format.

    loader batch: uint8 (B, 3, T, S, S) or YuvClips (data.decode_output)
      ──videoglore.data.model_input: to(device), [YUV420 → RGB, resize], normalize──▶
      float (B, 3, T, S, S) [channels_last_3d] ──model under autocast(dtype)──▶ logits (B, K)

``videoglore.data.model_input`` is the one place where the loader's batch format becomes the
network's input; this module adds only the memory format and the autocast around the model.

The fast path (``FastPath``): bf16 autocast, channels_last_3d and torch.compile. ``runtime.amp``,
``runtime.channels_last`` and ``runtime.compile`` default to "auto": on for CUDA, off on CPU (where
bf16 and channels_last_3d convolutions are slower and compiling costs more than it saves). On one
H100, R50+GloRe 8×224² trains at 273 clips/s in bf16 eager and 514 clips/s with channels_last_3d
and compile (issue 13 measurements). ``test`` uses the same autocast and memory format, not compile
(its chunks of views vary in size and would recompile).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from videoglore.config import Config, DataConfig, RuntimeConfig
from videoglore.data import YuvClips, model_input
from videoglore.errors import ConfigError


@dataclass(frozen=True)
class FastPath:
    """How a batch runs through the network on this device."""

    dtype: torch.dtype | None  # autocast dtype; None = float32
    channels_last: bool  # model and input in channels_last_3d
    compile: bool  # torch.compile the model (training only)


def fast_path(rc: RuntimeConfig, device: torch.device, training: bool = True) -> FastPath:
    """Resolve ``runtime.amp``, ``runtime.channels_last`` and ``runtime.compile`` for ``device``
    (``training=False``: testing and prediction, never compiled)."""
    on_cuda = device.type == "cuda"
    return FastPath(
        dtype=amp_dtype(rc.amp, device),
        channels_last=on_cuda if rc.channels_last == "auto" else bool(rc.channels_last),
        compile=training and (on_cuda if rc.compile == "auto" else bool(rc.compile)),
    )


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp``; None means full float32."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.amp=fp16 needs CUDA; use runtime.amp=bf16 or off on CPU")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast(dtype: torch.dtype | None, device: torch.device):
    """Autocast context for ``dtype`` (a no-op context when None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward_batch(
    model: nn.Module,
    batch: torch.Tensor | YuvClips,
    data: DataConfig,
    device: torch.device,
    fast: FastPath,
) -> torch.Tensor:
    """Logits (B, K) of a loader batch, in the autocast dtype (callers take ``.float()``)."""
    x = model_input(batch, data, device)  # float (B, 3, T, S, S)
    if fast.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with autocast(fast.dtype, device):
        return model(x)  # (B, K)


def forward_views(
    model: nn.Module,
    views: torch.Tensor | YuvClips,
    cfg: Config,
    device: torch.device,
    fast: FastPath,
) -> torch.Tensor:
    """Float32 logits (V, K), on the CPU, of test views (V, 3, T, S, S): ``forward_batch`` on
    chunks of ``test.max_views_per_forward`` views, so that 30 views × a batch of videos fit in
    device memory."""
    chunks = views.split(max(1, cfg.test.max_views_per_forward))
    return torch.cat(
        [forward_batch(model, c, cfg.data, device, fast).float().cpu() for c in chunks]
    )


def place_model(model: nn.Module, device: torch.device, fast: FastPath) -> nn.Module:
    """``model`` moved to ``device`` and, on the fast path, to channels_last_3d (in place)."""
    model.to(device)
    if fast.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    return model
