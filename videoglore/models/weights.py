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
* ``read_model_file(source)``: the one format detector for 3D files, read once into a
  ``ModelFile`` (weights with our key names, plus the config and class names ours carry):
  released GloRe / MF-Net files ``{'epoch', 'state_dict', 'optimizer'}`` whose keys start with
  ``module.`` (DataParallel), our checkpoints ``{'model': state_dict, 'config', 'classes', ...}``,
  and a bare state dict. Prefixes ``module.`` and ``_orig_mod.`` (torch.compile) are stripped.
* ``load_weights(model, source, strict=True)``: the tensors of such a file into ``model``.
  Missing, unexpected or wrongly shaped keys raise ``CheckpointError`` listing them;
  ``strict=False`` loads what fits and returns the lists instead. ``models.loading.load_model``
  builds on it (the fine-tuning rules of ``model.weights`` live there).

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
    released, path = zoo.is_zoo(path), zoo.resolve(path)
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
        raise CheckpointError(_unreadable(path, exc, released)) from None
    except Exception as exc:  # torn zip, truncated file, not a torch file at all
        raise CheckpointError(_unreadable(path, exc, released)) from None


def _unreadable(path: Path, exc: Exception, released: bool) -> str:
    reason = first_line(exc).split(". ")[0]  # torch's zip errors go on with advice for devs
    if released:  # a cached zoo file: damaged on disk or put there by hand
        return f"{path}: cannot read checkpoint ({reason}); delete {path} and it is fetched again"
    return f"{path}: cannot read checkpoint ({reason}); is it a .pt/.pth file from torch.save?"


def _numpy_array_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


@dataclass
class ModelFile:
    """A 3D weights file as read (once): its tensors under our key names and what else it says."""

    path: str  # the file, for messages
    format: str  # "videoglore" (ours), "official" (released GloRe / MF-Net) or "state_dict"
    weights: dict[str, torch.Tensor]
    config: dict | None = None  # ours: the config the net was trained with (config_to_dict)
    classes: list[str] | None = None  # ours: the class names, in classifier-row order

    @property
    def num_classes(self) -> int | None:
        """Rows of the file's classifier (None without one)."""
        head = self.weights.get("classifier.weight")
        return None if head is None else int(head.shape[0])


def read_model_file(source: str | Path | Mapping, name: str | Path | None = None) -> ModelFile:
    """Read a 3D weights file of any accepted format (or detect the format of a dict already read
    from one; ``name``: that file, for messages).

    Raises:
        CheckpointError: the file is missing, unreadable or refused, or holds no weights.
    """
    if isinstance(source, Mapping):
        obj, where = source, str(name or "<dict>")
    else:
        obj, where = read_torch_file(source), str(source)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict, got {type(obj).__name__}")
    config = classes = None
    if "model" in obj and isinstance(obj["model"], Mapping):
        state, fmt = obj["model"], "videoglore"
        config = obj["config"] if isinstance(obj.get("config"), Mapping) else None
        classes = [str(c) for c in obj["classes"]] if obj.get("classes") else None
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
    weights = {_strip(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return ModelFile(where, fmt, weights, dict(config) if config else None, classes)


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


FIT_ADVICE = (
    "check model.arch, depth, glore, width and num_classes against the file; to leave tensors at "
    "their initialisation, list them in model.weights_skip (glob patterns)"
)


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping | ModelFile,
    strict: bool = True,
    name: str | Path | None = None,
    advice: str = FIT_ADVICE,
) -> LoadReport:
    """Load a released or own 3D checkpoint (format detected) into ``model``; ``source`` is a
    file, what ``read_torch_file`` read from one (``name``: that file, for messages), or a
    ``ModelFile``.

    Raises:
        CheckpointError: unreadable file, or (with ``strict``) any missing / unexpected /
            wrongly shaped key, all of them listed in the message, then ``advice``.
    """
    file = source if isinstance(source, ModelFile) else read_model_file(source, name)
    report = match_weights(model, file)
    problems = report.missing or report.unexpected or report.mismatched
    if strict and problems:
        raise CheckpointError(describe_misfit(file, report, advice))
    fitting = {k: file.weights[k] for k in report.loaded}
    model.load_state_dict(fitting, strict=False)
    if problems:
        log.warning("partial load: %s", describe_misfit(file, report, advice))
    log.info("loaded %d tensors from %s (%s format)", len(fitting), file.path, file.format)
    return report


def match_weights(model: nn.Module, file: ModelFile) -> LoadReport:
    """Which of the file's tensors fit ``model`` (``loaded``: same name and shape), which are
    missing, unexpected or of another shape; loads nothing."""
    own = model.state_dict()
    report = LoadReport(format=file.format)
    report.unexpected = sorted(k for k in file.weights if k not in own)
    report.missing = sorted(k for k in own if k not in file.weights and not _benign(k))
    for key, value in file.weights.items():
        if key not in own:
            continue
        if value.shape != own[key].shape:
            report.mismatched.append(
                f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
            )
        else:
            report.loaded.append(key)
    report.loaded.sort()
    return report


def inflate_2d_weights(model: nn.Module, source: str | Path | Mapping) -> LoadReport:
    """Initialise ``model`` from a 2D ImageNet state dict by inflating its kernels along time.

    Returns the report: ``inflated`` (kernels repeated kt > 1 times), ``loaded`` (copied or only
    reshaped), ``unexpected`` (2D keys not in the model, skipped), ``mismatched`` (skipped
    classifier), ``missing`` (model keys left at their initialisation, e.g. GloRe units).

    Raises:
        CheckpointError: a 3D file (5-D kernels), or a tensor whose shape cannot be inflated
            into the model's (other than the classifier), naming the key.
    """
    state = read_model_file(source).weights
    solid = next((k for k, v in state.items() if v.dim() == 5), None)
    if solid is not None:
        raise CheckpointError(
            f"{_name(source)}: holds 3D weights ({solid} is 5-D), not a 2D ImageNet net to "
            "inflate; start from it with model.weights instead of model.pretrained"
        )
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
    if report.unexpected:  # e.g. an R101 file inflated into an R50: its extra blocks are left out
        log.warning(
            "%s: %d tensors of the 2D file have no place in the model and were left out (first: "
            "%s); is it the 2D net of the same architecture and depth?",
            _name(source),
            len(report.unexpected),
            report.unexpected[0],
        )
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


def describe_misfit(file: ModelFile, report: LoadReport, advice: str) -> str:
    """One line: the file, its format, the keys that do not fit (at most 10 of each kind), then
    ``advice``."""
    head = f"{file.path} ({file.format} format) does not fit the model"
    parts = []
    for label, keys in (
        ("missing", report.missing),
        ("unexpected", report.unexpected),
        ("wrong shape", report.mismatched),
    ):
        if keys:
            shown = ", ".join(keys[:10]) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")
            parts.append(f"{label}: {shown}")
    return f"{head}: " + "; ".join(parts) + f"; {advice}"
