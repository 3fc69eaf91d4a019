"""Multi-view testing: ``test(cfg)`` scores every video of ``data.val_list`` with a checkpoint.

    checkpoint ─read once (read_model_file)─▶ inference.model_from_file: the model and clip
      settings of ours from the checkpoint (engine/settings.py), of weights-only files from the
      config ─▶ model (bf16 + channels_last_3d on CUDA by default)
    test list ─ShardSampler (rank r: disjoint slice, no padding)─▶ scoring.score_videos per rank
      ─all_gather_object─▶ every rank ─merge_parts─▶ non-finite? stop on every rank
      ─▶ rank 0: video_metrics ─▶ results.write_results (metrics.json, predictions.csv, ...)

Unreadable videos are dropped by ``collate_test``, listed in ``metrics.json`` and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from data_prep.errors import bounded_repr
from data_prep.files import check_writable
from data_prep.lists import VideoList, read_classes
from videoglore.config import Config
from videoglore.data import build_loader
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import (
    Runtime,
    cleanup,
    gather_objects,
    on_main,
    setup_runtime,
)
from videoglore.engine.forward import fast_path, place_model
from videoglore.engine.inference import class_file, model_from_file
from videoglore.engine.results import mark_stale, write_results
from videoglore.engine.scoring import merge_parts, score_videos, video_metrics
from videoglore.errors import CheckpointError
from videoglore.models import ModelFile, read_model_file

log = logging.getLogger(__name__)


def test(
    cfg: Config,
    checkpoint: str | None = None,
    explicit: list[str] | tuple[str, ...] = (),
    config_name: str = "",
) -> dict:
    """Score every video of ``data.val_list``; rank 0 writes the outputs and returns the metrics.

    The net and clip protocol of a checkpoint of ours come from the checkpoint, except the keys
    in ``explicit`` (dotted keys set on the command line); ``config_name`` names ``cfg``'s file
    in the log line that says so (``engine/settings.py``). Returns {} on other ranks. Metric
    values are fractions in [0, 1].

    Raises:
        CheckpointError: the checkpoint is unreadable (naming the run's other checkpoints), does
            not fit, was trained on other classes than the test list's, or its scores are NaN/Inf.
    """
    rt = setup_runtime(cfg.runtime.device, cfg.runtime.threads)
    try:
        return _test(cfg, checkpoint, rt, explicit, config_name)
    finally:
        cleanup(rt)


def _test(cfg: Config, checkpoint: str | None, rt: Runtime, explicit, config_name: str) -> dict:
    path = checkpoint or cfg.test.checkpoint or str(ckpt.find_checkpoint(cfg.output.dir))
    loaded = model_from_file(_read(path), cfg, explicit, config_name)
    cfg, model, classes = loaded.cfg, loaded.model, loaded.classes  # cfg: what is tested with
    if rt.is_main:
        log.info("%s", loaded.settings.line(cfg))
    fast = fast_path(cfg.runtime, rt.device, training=False)
    place_model(model, rt.device, fast).eval()
    loader = build_loader(cfg, "test", distributed=rt.distributed, batch_size=cfg.test.batch_size)
    _check_classes(path, classes, cfg, loader.dataset.records)
    run_dir = Path(cfg.output.dir)
    on_main(lambda: check_writable(run_dir / "metrics.json"), rt)  # before hours of scoring
    part = score_videos(model, loader, cfg, rt.device, fast, progress=rt.is_main)
    merged = merge_parts(gather_objects(part, rt))
    if merged.non_finite:  # every rank holds every part: all stop together
        stale = mark_stale(run_dir) if rt.is_main else []
        note = f"; the earlier {', '.join(stale)} renamed to *.stale" if stale else ""
        raise CheckpointError(
            f"{path}: the model gives non-finite scores (NaN/Inf) for {merged.non_finite} of "
            f"{len(merged.order)} videos; no metrics written{note}. Test another checkpoint "
            "(the weights or BatchNorm statistics of this one diverged)"
        )
    if not rt.is_main:
        return {}
    records = loader.dataset.records  # the list as the loader read it; parts index into it
    metrics = {
        **video_metrics(merged, records, classes, cfg),
        "checkpoint": str(path),
        **loaded.settings.record(cfg),
    }
    write_results(run_dir, metrics, merged, records, classes, cfg.test.save_scores)
    log.info(
        "tested %d videos (%d skipped) from %s", metrics["num_videos"], metrics["num_skipped"], path
    )
    return {**metrics, "run_dir": str(run_dir)}


def _read(path: str) -> ModelFile:
    """The checkpoint, read once; when it cannot be read, the message names the run's training
    checkpoints that could be tested instead."""
    try:
        return read_model_file(path)
    except CheckpointError as exc:
        folder = Path(path).parent
        others = [p for p in ckpt.training_checkpoints(folder.parent) if p != Path(path)]
        if folder.name != ckpt.CKPT_DIR or not others:
            raise
        names = ", ".join(p.name for p in others)
        raise CheckpointError(
            f"{exc}; the run's training checkpoints in {folder}: {names}; test one with "
            f"--checkpoint {others[-1]}"
        ) from None


def _check_classes(path: str, classes: list[str], cfg: Config, records) -> None:
    """The test list's labels must index the checkpoint's classes (same names as the list's
    class file when there is one), or every metric would count the wrong class."""
    listed = class_file(cfg)
    names = read_classes(listed) if listed is not None else None
    labels = VideoList.of(records).column("label")
    top = int(labels.max()) if len(labels) else -1
    if (names is None or names == classes) and top < len(classes):
        return
    shown = bounded_repr(classes[:3]) + (" ..." if len(classes) > 3 else "")
    where = f"{listed} lists {len(names)}" if names is not None else f"labels go up to {top}"
    raise CheckpointError(
        f"{path}: the model was trained on {len(classes)} classes {shown} but {where} "
        f"classes for {cfg.data.val_list}; test it on the dataset it was trained on (the "
        "class names and their order must match)"
    )
