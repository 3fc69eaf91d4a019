"""Multi-view testing: ``test(cfg)`` scores every video of ``data.val_list`` with a checkpoint.

    checkpoint ─read once: ours (model_from_state) or released weights (load_weights)─▶ model
      (bf16 + channels_last_3d on CUDA by default)
    test list ─ShardSampler (rank r: disjoint slice, no padding)─▶ scoring.score_videos per rank
      ─all_gather_object─▶ every rank ─merge_parts─▶ non-finite? stop on every rank
      ─▶ rank 0: video_metrics ─▶ results.write_results (metrics.json, predictions.csv, ...)

Unreadable videos are dropped by ``collate_test``, listed in ``metrics.json`` and counted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

from data_prep.lists import read_classes
from videoglore.config import Config
from videoglore.data import build_loader
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.distributed import Runtime, cleanup, gather_objects, setup_runtime
from videoglore.engine.forward import fast_path, place_model
from videoglore.engine.inference import model_from_state
from videoglore.engine.results import mark_stale, write_results
from videoglore.engine.scoring import merge_parts, score_videos, video_metrics
from videoglore.errors import CheckpointError
from videoglore.models import build_model, load_weights
from videoglore.models.weights import read_torch_file

log = logging.getLogger(__name__)


def test(cfg: Config, checkpoint: str | None = None) -> dict:
    """Score every video of ``data.val_list``; rank 0 writes the outputs and returns the metrics.

    Returns {} on other ranks. Metric values are fractions in [0, 1].

    Raises:
        CheckpointError: the checkpoint is unreadable, or its scores are NaN/Inf.
    """
    rt = setup_runtime(cfg.runtime.device, cfg.runtime.threads)
    try:
        return _test(cfg, checkpoint, rt)
    finally:
        cleanup(rt)


def _test(cfg: Config, checkpoint: str | None, rt: Runtime) -> dict:
    path = checkpoint or cfg.test.checkpoint or str(ckpt.find_checkpoint(cfg.output.dir))
    model, classes = _model_to_test(path, cfg)
    fast = fast_path(cfg.runtime, rt.device, training=False)
    place_model(model, rt.device, fast).eval()
    loader = build_loader(cfg, "test", distributed=rt.distributed, batch_size=cfg.test.batch_size)
    part = score_videos(model, loader, cfg, rt.device, fast, progress=rt.is_main)
    merged = merge_parts(gather_objects(part, rt))
    run_dir = Path(cfg.output.dir)
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
    metrics = {**video_metrics(merged, records, classes, cfg), "checkpoint": str(path)}
    write_results(run_dir, metrics, merged, records, classes, cfg.test.save_scores)
    log.info(
        "tested %d videos (%d skipped) from %s", metrics["num_videos"], metrics["num_skipped"], path
    )
    return {**metrics, "run_dir": str(run_dir)}


def _model_to_test(path: str, cfg: Config):
    """Net and class names from our checkpoint, or else a released / bare weights file (e.g.
    GloRe's ``resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth``) loaded into the net of
    ``cfg.model``, with the class list of ``cfg.data`` (released label order: prepare's
    kinetics400 list). The file is read once."""
    state = read_torch_file(path)  # CheckpointError: not found, unreadable, refused
    if isinstance(state, Mapping) and "model" in state and "config" in state:  # ours
        model, classes, _ = model_from_state(state, path)
        return model, classes
    model = build_model(dataclasses.replace(cfg.model, pretrained="", weights=""))
    load_weights(model, state, name=path)  # CheckpointError naming the file when it does not fit
    listed = cfg.data.classes or str(Path(cfg.data.val_list).parent / "classes.json")
    if Path(listed).is_file():
        return model, read_classes(listed)
    return model, [str(i) for i in range(model.num_classes)]
