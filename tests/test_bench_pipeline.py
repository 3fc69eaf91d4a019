"""``run.py benchmark pipeline`` tiny on CPU: real loader, real step, every figure reported."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import load_benchmark
from benchmarks.loading import pipeline
from videoglore.data.yuv420 import YuvClips


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_pipeline_quick_on_cpu(tmp_path, monkeypatch):
    steps = []
    real = pipeline.train_step
    # train_step(run, clips, labels): the engine's own step
    monkeypatch.setattr(pipeline, "train_step", lambda *a: steps.append(a[1]) or real(*a))
    out = tmp_path / "pipeline"
    args = parse(
        "--quick",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    )
    result = pipeline.run(args)
    assert load_benchmark("pipeline") is pipeline
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["rows"]
    assert [row["decode_output"] for row in rows] == ["rgb", "yuv420"]
    for row in rows:
        for key in ("loader_clips_per_s", "device_clips_per_s", "end_to_end_clips_per_s"):
            assert row[key] > 0
        assert 0 <= row["data_wait_pct"] <= 100 and row["workers"] == 1 and row["batch"] == 2
        assert row["limit"].split()[0] in ("loader", "device")
    # device-only: warm-up + timed steps on one batch; end to end: the same count from the loader
    assert len(steps) == 2 * 2 * (1 + 3)
    assert any(isinstance(clips, YuvClips) for clips in steps)
    assert "end to end clips/s" in result.table and "data wait" in result.table


def test_pipeline_rejects_a_bad_clip():
    from videoglore.errors import ConfigError

    with pytest.raises(ConfigError, match="--clip"):
        pipeline.pipeline_config(parse("--clip", "8x224"))
