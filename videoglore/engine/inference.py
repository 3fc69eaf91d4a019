"""Using a trained model: rebuild it from a file, and top-k labels for video files.

    checkpoint ─read_model_file (once)─▶ settings.resolve (checkpoint vs config vs command line)
      ─models.load_model (exact)─▶ LoadedModel(model, classes, cfg, settings)
    files and folders ─find_videos (folders: every video under them)─▶ paths
      ─probe_video (data_prep)─▶ test views of the resolved config (K clips × C crops)
      ─forward_views, softmax averaged over the views─▶ Prediction(video, top-k labels | error)

A file that cannot be read gives a ``Prediction`` with ``error`` set and the others go on; the
command line prints one line per failure and exits non-zero at the end.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from data_prep.codec import probe_video
from data_prep.lists import VideoRecord, read_classes
from videoglore.config import Config, config_from_dict, load_config, override_keys
from videoglore.data import build_dataset
from videoglore.engine.distributed import select_device
from videoglore.engine.forward import FastPath, fast_path, forward_views, place_model
from videoglore.engine.metrics import aggregate_views
from videoglore.engine.predictions import (  # noqa: F401 (re-exported: callers import them here)
    Prediction,
    check_output_path,
    find_videos,
    write_predictions,
)
from videoglore.engine.settings import Settings, checkpoint_config, resolve
from videoglore.errors import CheckpointError, ConfigError, VideoError
from videoglore.models import ModelFile, load_model, model_name, read_model_file
from videoglore.threads import torch_threads

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A net rebuilt from a file, with its class names and the settings to run it with."""

    model: nn.Module  # on the CPU, eval mode
    classes: list[str]  # in classifier-row order
    cfg: Config  # the settings it runs with (engine/settings.py: what came from where)
    settings: Settings


def load_model_from_checkpoint(
    checkpoint: str | Path,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> LoadedModel:
    """The net of ``checkpoint`` (CPU, eval mode), its class names and the settings to run it
    with, by the rule of ``predict`` and ``export``: without ``config``, everything the
    checkpoint holds, then the command-line ``overrides``; with a ``config`` file (required for
    weights-only files: released ``.pth``, bare state dicts), the rule of ``test``
    (``engine/settings.py``). One log line says what came from where.

    Raises:
        CheckpointError: the file is missing, unreadable, refused, holds weights only and no
            ``config`` is given, or its weights do not fit the model.
    """
    file = read_model_file(checkpoint)
    if config is not None:
        user = load_config(config, overrides)
    else:
        user = checkpoint_config(file, overrides) if file.config is not None else None
    loaded = model_from_file(file, user, override_keys(overrides), str(config or ""))
    log.info("%s", loaded.settings.line(loaded.cfg))
    return loaded


def model_from_file(
    file: ModelFile,
    user: Config | None,
    explicit: list[str] | tuple[str, ...] = (),
    config_name: str = "",
) -> LoadedModel:
    """The net of a file read by ``read_model_file``, with the settings ``settings.resolve``
    gives from the file and the user's config (None: the checkpoint's own config; then the file
    must be ours), and its class names (the file's, else those of the user's data, else
    "0", "1", ...).

    Raises:
        CheckpointError: weights only and no ``user`` config; weights that do not fit, naming
            the command-line keys when they are the cause.
    """
    if user is None:
        if file.config is None:
            raise CheckpointError(
                f"{file.path} holds weights only ({file.format} format) and no config saying "
                "which net they belong to: pass -c CONFIG whose model section describes that net "
                "(and data.classes for the class names)"
            )
        user = config_from_dict(copy.deepcopy(file.config), source=f"{file.path}:config")
    cfg, settings = resolve(file, user, explicit, config_name)
    try:
        model, _ = load_model(cfg.model, file, advice=_advice(settings))
    except CheckpointError as exc:
        raise _override_error(file, settings, exc) from None
    return LoadedModel(model.eval(), _class_names(file, cfg), cfg, settings)


def _advice(settings: Settings) -> str:
    if settings.has_config:
        return "its weights do not match the model of its own config: was the file edited?"
    return (
        f"the model section of {settings.config_name} must describe the net in the file "
        "(model.arch, depth, glore, width, num_classes)"
    )


def _override_error(file: ModelFile, settings: Settings, exc: CheckpointError) -> Exception:
    """A load that failed because of command-line model keys: say so, and what the file holds."""
    if not settings.has_config:
        return exc
    held = config_from_dict(copy.deepcopy(file.config), source=f"{file.path}:config").model
    keys = {
        k: v
        for k, v in settings.from_command_line.items()
        if k.startswith("model.") and getattr(held, k.removeprefix("model."), v) != v
    }
    if not keys:
        return exc
    overrides = ", ".join(f"{k}={v}" for k, v in sorted(keys.items()))
    return CheckpointError(
        f"{file.path}: {overrides} from the command line does not fit the model the checkpoint "
        f"holds ({model_name(held)} width {held.width}, {file.num_classes} classes); drop it to "
        "use the checkpoint's own model"
    )


def _class_names(file: ModelFile, cfg: Config) -> list[str]:
    """The file's class names; for a file without, those of the user's data (data.classes, or
    classes.json beside the val or train list); else "0", "1", ...

    Raises:
        CheckpointError: the listed classes are not as many as the model's outputs.
    """
    if file.classes:
        return file.classes
    listed = class_file(cfg)
    if listed is None:
        return [str(i) for i in range(cfg.model.num_classes)]
    names = read_classes(listed)
    if len(names) != cfg.model.num_classes:
        raise CheckpointError(
            f"{file.path}: its net has {cfg.model.num_classes} classes but {listed} lists "
            f"{len(names)}; set data.classes to the class list the weights were trained with"
        )
    return names


def class_file(cfg: Config) -> Path | None:
    """The class list of the user's data: ``data.classes``, else classes.json beside the val
    list, else beside the train list; None when there is none."""
    lists = [p for p in (cfg.data.val_list, cfg.data.train_list) if p]
    candidates = [Path(cfg.data.classes)] if cfg.data.classes else []
    candidates += [Path(p).parent / "classes.json" for p in lists]
    return next((c for c in candidates if c.is_file()), None)


@torch.no_grad()
def predict(
    videos: list[str],
    checkpoint: str | Path,
    topk: int = 5,
    device: str | None = None,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Iterator[Prediction]:
    """Top-``topk`` labels per video, yielded one video at a time (a bad file gives a Prediction
    with ``error``).

    Settings (``engine/settings.py``): without ``config``, everything the checkpoint was trained
    and tested with (runtime: this machine's defaults), then the command-line ``overrides``; with
    a ``config`` file (required for weights-only files), the rule of `test`: the checkpoint's
    model and clip protocol unless an override sets them, the rest from the file. ``device``
    (None: ``runtime.device``) wins over both.

    Raises:
        ConfigError: ``topk`` < 1, before any work.
        CheckpointError: the checkpoint is missing, corrupt, refused, or does not fit.
    """
    if topk < 1:
        raise ConfigError(f"predict --topk must be >= 1, got {topk}")
    model, classes, cfg, dev, fast = model_for_prediction(checkpoint, device, config, overrides)
    with torch_threads(cfg.runtime.threads):
        for video in videos:
            try:
                probs = _video_scores(model, video, cfg, dev, fast)  # (K,)
            except VideoError as exc:
                yield Prediction(video, error=str(exc))
                continue
            top = probs.topk(min(topk, len(probs)))
            names = [classes[c] for c in top.indices.tolist()]
            yield Prediction(video, list(zip(names, top.values.tolist(), strict=True)))


def model_for_prediction(
    checkpoint: str | Path,
    device: str | None = None,
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[nn.Module, list[str], Config, torch.device, FastPath]:
    """The net of ``checkpoint`` on its device (in the fast path's memory format), its class
    names, the config it runs with, the device and the fast path: the settings rule of
    ``predict``, for ``predict`` and ``predict --window`` (engine/windows.py).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt, refused, or does not fit.
    """
    loaded = load_model_from_checkpoint(checkpoint, config, overrides)
    model, classes, cfg = loaded.model, loaded.classes, loaded.cfg
    dev = select_device(device or cfg.runtime.device)
    fast = fast_path(cfg.runtime, dev, training=False)
    place_model(model, dev, fast)
    return model, classes, cfg, dev, fast


def probed_record(video: str | Path) -> VideoRecord:
    """A video file's record as a prepared list would hold it, from its probe (frame count,
    fps, upright size, rotation).

    Raises:
        VideoError: naming the file when it cannot be opened or decoded.
    """
    info = probe_video(video)
    width, height = info.upright_size  # as a list has it, with the display matrix's rotation
    return VideoRecord(str(video), 0, "", info.frame_count, info.fps, width, height, info.rotation)


def _video_scores(
    model: nn.Module, video: str, cfg: Config, device: torch.device, fast: FastPath
) -> torch.Tensor:
    record = probed_record(video)
    views = build_dataset(cfg, "test", records=[record]).eval_views(record)  # (V, 3, T, S, S)
    return view_scores(model, views, cfg, device, fast, video)


def view_scores(
    model: nn.Module, views, cfg: Config, device: torch.device, fast: FastPath, video: str
) -> torch.Tensor:
    """Class probabilities (K,) of test views (V, 3, T, S, S) or ``YuvClips`` of one video (or
    one window of it, engine/windows.py): softmax averaged over the views, as ``test`` does.

    Raises:
        VideoError: naming ``video`` when the model gives non-finite scores.
    """
    logits = forward_views(model, views, cfg, device, fast)  # (V, K)
    if not logits.isfinite().all():
        raise VideoError(f"{video}: the model gives non-finite scores (NaN/Inf) for this video")
    return aggregate_views(logits[None], "softmax")[0]  # (K,)
