"""Loading weights into our 3D nets: inflated 2D ImageNet nets and 3D checkpoints.

Two entry points:

* ``inflate_2d_weights(model, source)``: a 2D ImageNet state dict in the released "lite"
  pre-activation key layout (``resnet50-lite.pth`` / ``resnet101-lite.pth`` of
  facebookresearch/GloRe, ``MFNet2D_ImageNet1k-0000.pth`` of cypw/PyTorch-MFNet). Their keys equal
  ours (``conv2.B01.conv_m1.conv.weight`` ...) with 4-D instead of 5-D conv kernels. As in the
  released ``network/initializer.py::init_3d_from_2d_dict`` ("inflation" method), a kernel
  (O, I, kh, kw) becomes (O, I, kt, kh, kw) by repeating it kt times along time and dividing by kt,
  so a clip of identical frames gives (away from the temporal borders) the 2D net's response.
  Same-shape tensors (BN statistics, 1×1×1 kernels after reshaping) are copied; the classifier is
  skipped when its shape differs (other classes), as are keys the model does not have.
  torchvision's ResNet-50 is post-activation and has other key names: it is not supported.
* ``load_weights(model, source, strict=True)``: one loader for every 3D checkpoint format:
  released GloRe / MF-Net files ``{'epoch', 'state_dict', 'optimizer'}`` whose keys start with
  ``module.`` (DataParallel), our checkpoints ``{'model': state_dict, ...}``, and a bare state dict.
  Prefixes ``module.`` and ``_orig_mod.`` (torch.compile) are stripped. Missing, unexpected or
  wrongly shaped keys raise ``CheckpointError`` listing them; ``strict=False`` loads what fits and
  returns the lists instead.

Files are read by ``read_torch_file``, the project's one ``torch.load`` (``weights_only=True``):
no code from a checkpoint is executed; the engine's checkpoint reader uses it too. It is also
where a released name (``zoo:resnet50-lite``, ``videoglore.zoo``) becomes a cached file.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data_prep.files import first_line
from videoglore import zoo
from videoglore.errors import CheckpointError

log = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class LoadReport:
    """What ``load_weights`` / ``inflate_2d_weights`` did, key by key."""

    format: str  # "official", "videoglore", "state_dict" or "2d"
    loaded: list[str] = field(default_factory=list)  # copied as they were
    inflated: list[str] = field(default_factory=list)  # 2D kernels repeated along time
    missing: list[str] = field(default_factory=list)  # model keys the file does not fill
    unexpected: list[str] = field(default_factory=list)  # file keys the model does not have
    mismatched: list[str] = field(default_factory=list)  # "key: file shape vs model shape"


def read_torch_file(path: str | Path, mmap: bool = False) -> Any:
    """The project's one ``torch.load``: tensors and plain containers only, never code.

    ``weights_only=True`` refuses every Python object outside tensors and plain data, so a
    checkpoint cannot run code. Also allowed: NumPy arrays of plain dtypes, found in the RNG state
    of checkpoints written before videoglore stored it as tensors (rebuilding one runs no code).
    ``mmap=True`` maps the tensors instead of reading them: reading one number of a checkpoint
    then costs kilobytes, not the size of the model. ``path`` may be a released name,
    ``zoo:NAME`` (``videoglore.zoo``): the cached file, downloaded first when missing.

    Raises:
        CheckpointError: one line naming the file: missing, unreadable, or refused; or the
            ``zoo:`` file that cannot be downloaded.
        ConfigError: an unknown ``zoo:`` name.
    """
    path = zoo.resolve(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        forbidden = re.search(r"GLOBAL (\S+)", str(exc))
        if forbidden:
            raise CheckpointError(
                f"{path}: refused: loading it would call {forbidden.group(1)}, which can run "
                "code; videoglore reads only tensors and plain data (torch.load weights_only="
                "True). Use checkpoints written by videoglore or the released code"
            ) from None
        raise CheckpointError(_unreadable(path, exc)) from None
    except Exception as exc:  # torn zip, truncated file, not a torch file at all
        raise CheckpointError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: Exception) -> str:
    reason = first_line(exc).split(". ")[0]  # torch's zip errors go on with advice for devs
    return f"{path}: cannot read checkpoint ({reason}); is it a .pt/.pth file from torch.save?"


def _numpy_array_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def read_state_dict(
    source: str | Path | Mapping, name: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Return (state dict with our key names, detected format) from a file or a loaded dict
    (``name``: the file it came from, for messages)."""
    if isinstance(source, Mapping):
        obj, where = source, str(name or "<dict>")
    else:
        obj, where = read_torch_file(source), str(source)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        state, fmt = obj["model"], "videoglore"
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state, fmt = obj["state_dict"], "official"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, fmt = obj, "state_dict"
    else:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(
            f"{where}: no weights found; expected a 'model' or 'state_dict' entry or a bare state "
            f"dict, got keys: {keys}"
        )
    return {_strip(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}, fmt


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _benign(key: str) -> bool:
    # BN batch counters are absent from files saved before PyTorch 0.4.1; they only matter when
    # BN momentum is None, so a file without them still gives the same outputs.
    return key.endswith("num_batches_tracked")


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping,
    strict: bool = True,
    name: str | Path | None = None,
) -> LoadReport:
    """Load a released or own 3D checkpoint (format detected) into ``model``; ``source`` is a
    file or what ``read_torch_file`` read from one (``name``: that file, for messages).

    Raises:
        CheckpointError: unreadable file, or (with ``strict``) any missing / unexpected /
            wrongly shaped key, all of them listed in the message.
    """
    state, fmt = read_state_dict(source, name)
    where = source if name is None else Path(name)  # what the messages name
    own = model.state_dict()
    report = LoadReport(format=fmt)
    report.unexpected = sorted(k for k in state if k not in own)
    report.missing = sorted(k for k in own if k not in state and not _benign(k))
    fitting = {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape != own[key].shape:
            report.mismatched.append(
                f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
            )
        else:
            fitting[key] = value
    problems = report.missing or report.unexpected or report.mismatched
    if strict and problems:
        raise CheckpointError(_describe(where, fmt, report))
    model.load_state_dict(fitting, strict=False)
    report.loaded = sorted(fitting)
    if problems:
        log.warning("partial load: %s", _describe(where, fmt, report))
    log.info("loaded %d tensors from %s (%s format)", len(fitting), _name(where), fmt)
    return report


def inflate_2d_weights(model: nn.Module, source: str | Path | Mapping) -> LoadReport:
    """Initialise ``model`` from a 2D ImageNet state dict by inflating its kernels along time.

    Returns the report: ``inflated`` (kernels repeated kt > 1 times), ``loaded`` (copied or only
    reshaped), ``unexpected`` (2D keys not in the model, skipped), ``mismatched`` (skipped
    classifier), ``missing`` (model keys left at their initialisation, e.g. GloRe units).

    Raises:
        CheckpointError: a tensor whose shape cannot be inflated into the model's (other than the
            classifier), naming the key.
    """
    state, _ = read_state_dict(source)
    own = model.state_dict()
    report = LoadReport(format="2d")
    new = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape == target.shape:
            new[key] = value
            report.loaded.append(key)
        elif key.startswith("classifier."):
            report.mismatched.append(
                f"{key}: file {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
        elif value.dim() == 4 and target.dim() == 5 and _same_but_time(value, target):
            kt = target.shape[2]
            # (O, I, kh, kw) → (O, I, kt, kh, kw): repeat along time, divide by kt
            new[key] = (value / kt).unsqueeze(2).expand_as(target).clone()
            (report.inflated if kt > 1 else report.loaded).append(key)
        else:
            raise CheckpointError(
                f"{_name(source)}: cannot inflate {key}: 2D shape {tuple(value.shape)} does not "
                f"fit the model's {tuple(target.shape)}; is this the 2D net of the same "
                "architecture (and width)?"
            )
    report.missing = sorted(k for k in own if k not in new and not _benign(k))
    model.load_state_dict(new, strict=False)
    log.info(
        "inflated %d kernels, copied %d tensors from %s; %d model tensors not in the 2D file",
        len(report.inflated),
        len(report.loaded),
        _name(source),
        len(report.missing),
    )
    return report


def _same_but_time(value: torch.Tensor, target: torch.Tensor) -> bool:
    o, i, kh, kw = value.shape
    return (o, i, kh, kw) == (target.shape[0], target.shape[1], target.shape[3], target.shape[4])


def _name(source: str | Path | Mapping) -> str:
    return "<dict>" if isinstance(source, Mapping) else str(source)


def _describe(source: str | Path | Mapping, fmt: str, report: LoadReport) -> str:
    head = f"{_name(source)} ({fmt} format) does not fit the model"
    parts = []
    for label, keys in (
        ("missing", report.missing),
        ("unexpected", report.unexpected),
        ("wrong shape", report.mismatched),
    ):
        if keys:
            shown = ", ".join(keys[:10]) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")
            parts.append(f"{label}: {shown}")
    parts.append("check the model name/width/num_classes, or load with strict=False")
    return f"{head}: " + "; ".join(parts)
