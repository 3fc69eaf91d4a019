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
import csv
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from data_prep.codec import probe_video
from data_prep.files import as_output_error, atomic_open, write_json
from data_prep.lists import VideoRecord, read_classes
from data_prep.sources import VIDEO_EXTENSIONS
from videoglore.config import Config, config_from_dict, load_config, override_keys
from videoglore.data import build_dataset
from videoglore.data.pixels import upright_size
from videoglore.engine.distributed import select_device
from videoglore.engine.forward import FastPath, fast_path, forward_views, place_model
from videoglore.engine.metrics import aggregate_views
from videoglore.engine.settings import Settings, checkpoint_config, resolve
from videoglore.errors import CheckpointError, ConfigError, DataError, VideoError
from videoglore.models import ModelFile, load_model, model_name, read_model_file

log = logging.getLogger(__name__)

OUTPUT_FORMATS = (".csv", ".json")


@dataclass
class Prediction:
    """The top-k labels of one video, best first, or why it has none."""

    video: str
    labels: list[tuple[str, float]] = field(default_factory=list)  # (label, probability)
    error: str = ""  # one line; "" when the video was scored


@dataclass
class LoadedModel:
    """A net rebuilt from a file, with its class names and the settings to run it with."""

    model: nn.Module  # on the CPU, eval mode
    classes: list[str]  # in classifier-row order
    cfg: Config  # the settings it runs with (engine/settings.py: what came from where)
    settings: Settings


def load_model_from_checkpoint(
    path: str | Path,
    device: torch.device | str = "cpu",
    cfg: Config | None = None,
    explicit: list[str] | tuple[str, ...] = (),
) -> tuple[nn.Module, list[str], Config]:
    """Rebuild the network of a checkpoint and load its weights (in eval mode on ``device``);
    returns (model, class names, the config to run it with).

    Without ``cfg`` the checkpoint's own config is used (a file of ours); with one, the rule of
    ``engine/settings.py`` (``explicit``: dotted keys set on the command line), which also takes
    weights-only files (released ``.pth``, bare state dicts).

    Raises:
        CheckpointError: the file is missing, unreadable, refused, holds weights only and no
            ``cfg`` is given, or its weights do not fit the model.
    """
    loaded = model_from_file(read_model_file(path), cfg, explicit)
    log.info("%s", loaded.settings.line(loaded.cfg))
    loaded.model.to(device)
    return loaded.model, loaded.classes, loaded.cfg


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


def find_videos(paths: Iterable[str | Path]) -> list[str]:
    """Files as given, folders replaced by the videos under them (recursively, by extension,
    sorted; hidden entries skipped). A path that does not exist is kept: it fails as a video.

    Raises:
        DataError: a folder holds no video.
    """
    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(str(path))
            continue
        videos = sorted(_videos_under(path))
        if not videos:
            raise DataError(
                f"no videos found in {path} (extensions: {', '.join(VIDEO_EXTENSIONS)})"
            )
        found.extend(videos)
    return found


def _videos_under(folder: Path) -> Iterator[str]:
    suffixes = {f".{ext}" for ext in VIDEO_EXTENSIONS}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                yield str(Path(root) / name)


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
    file = read_model_file(checkpoint)
    if config is not None:
        user = load_config(config, overrides)
    else:
        user = checkpoint_config(file, overrides) if file.config is not None else None
    loaded = model_from_file(file, user, override_keys(overrides), str(config or ""))
    model, classes, cfg = loaded.model, loaded.classes, loaded.cfg
    log.info("%s", loaded.settings.line(cfg))
    dev = select_device(device or cfg.runtime.device)
    fast = fast_path(cfg.runtime, dev, training=False)
    place_model(model, dev, fast)
    for video in videos:
        try:
            probs = _video_scores(model, video, cfg, dev, fast)  # (K,)
        except VideoError as exc:
            yield Prediction(video, error=str(exc))
            continue
        top = probs.topk(min(topk, len(probs)))
        names = [classes[c] for c in top.indices.tolist()]
        yield Prediction(video, list(zip(names, top.values.tolist(), strict=True)))


def _video_scores(
    model: nn.Module, video: str, cfg: Config, device: torch.device, fast: FastPath
) -> torch.Tensor:
    info = probe_video(video)  # VideoError naming the file
    rotation = getattr(info, "rotation", 0)  # the display matrix, where the probe reads it
    height, width = upright_size(info.height, info.width, rotation)  # info: the stored frame's
    record = VideoRecord(str(video), 0, "", info.frame_count, info.fps, width, height, rotation)
    views = build_dataset(cfg, "test", records=[record]).eval_views(record)  # (V, 3, T, S, S)
    logits = forward_views(model, views, cfg, device, fast)  # (V, K)
    if not logits.isfinite().all():
        raise VideoError(f"{video}: the model gives non-finite scores (NaN/Inf) for this video")
    return aggregate_views(logits[None], "softmax")[0]  # (K,)


def check_output_path(path: str | Path | None) -> None:
    """Check ``--out`` before any work: a .csv or .json file name, not a folder; its folder is
    made now (so that one that cannot be made fails before the predictions, not after).

    Raises:
        ConfigError: not a .csv/.json name, or a folder of that name is in the way.
        OutputError: the folder cannot be made (a file in the way, no permission, ...).
    """
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--out {path}: name a .csv or .json file for the predictions")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; name a .csv or .json file inside it")
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {path}: {parent} is a file, not a folder")
    with as_output_error(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)


def write_predictions(path: str | Path, predictions: list[Prediction]) -> Path:
    """Write the predictions as CSV (video, error, top1, p1, ...) or JSON, atomically."""
    check_output_path(path)
    if Path(path).suffix.lower() == ".json":
        return write_json(path, [_as_json(p) for p in predictions])
    k = max((len(p.labels) for p in predictions), default=0)
    header = ["video", "error"] + [f"{kind}{r}" for r in range(1, k + 1) for kind in ("top", "p")]
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in predictions:
            cells = [cell for name, prob in p.labels for cell in (name, f"{prob:.4f}")]
            writer.writerow([p.video, p.error, *cells, *[""] * (2 * k - len(cells))])
    return Path(path)


def _as_json(p: Prediction) -> dict:
    labels = [{"label": name, "probability": prob} for name, prob in p.labels]
    return {"video": p.video, "labels": labels, "error": p.error}
