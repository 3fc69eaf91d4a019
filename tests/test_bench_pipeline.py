"""``run.py benchmark pipeline`` tiny on CPU: real loader, real step, every figure reported."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from benchmarks import load_benchmark
from benchmarks.loading import pipeline
from videoglore.data.yuv420 import YuvClips
from videoglore.engine.forward import FastPath, fast_path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_pipeline_quick_on_cpu(tmp_path, monkeypatch):
    steps, compiled = [], []
    real = pipeline.train_step
    # train_step(run, clips, labels): the engine's own step
    monkeypatch.setattr(pipeline, "train_step", lambda *a: steps.append(a[1]) or real(*a))
    # --compile MODE reaches torch.compile (stubbed: compiling is slow on CPU and not measured)
    monkeypatch.setattr(torch, "compile", lambda model, mode: compiled.append(mode) or model)
    out = tmp_path / "pipeline"
    args = parse(
        "--quick",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--compile",
        "reduce-overhead",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    )
    result = pipeline.run(args)
    assert load_benchmark("pipeline") is pipeline
    assert compiled == ["reduce-overhead"]
    report = json.loads(out.with_suffix(".json").read_text())
    setup = report["setup"]
    assert (setup["precision"], setup["channels_last"], setup["compile"]) == (
        "fp32",
        False,
        "reduce-overhead",
    )
    rows = report["rows"]
    assert [row["decode_output"] for row in rows] == ["rgb", "yuv420"]
    for row in rows:
        assert row["workers"] == 1 and row["batch"] == 2
        assert row["loader_clips_per_s_per_worker"] == row["loader_clips_per_s"]  # 1 worker
        # the limit is named from the figures in the same row
        loader_bound = (
            row["loader_clips_per_s"] < row["device_clips_per_s"]
            or row["data_wait_pct"] > pipeline.DATA_WAIT_LIMIT
        )
        assert row["limit"] == ("loader (1 workers)" if loader_bound else "device (cpu)"), row
    # device-only: warm-up + timed steps on one batch; end to end: the same count from the loader
    assert len(steps) == 2 * 2 * (1 + 3)
    assert any(isinstance(clips, YuvClips) for clips in steps)
    assert "end to end clips/s" in result.table and "data wait" in result.table


def test_fast_path_options_are_the_train_configs(tmp_path):
    """--precision/--channels-last/--compile set runtime.amp/channels_last/compile, resolved by the
    engine's fast_path; left out, the config's values stay (auto without --config)."""
    path = tmp_path / "cfg.yaml"
    path.write_text("runtime:\n  amp: bf16\n  channels_last: false\n  compile: false\n")
    cfg = pipeline.pipeline_config(parse("-c", str(path)))
    rc = cfg.runtime
    assert (rc.amp, rc.channels_last, rc.compile) == ("bf16", False, False)

    fast = ["--precision", "off", "--channels-last", "on", "--compile", "max-autotune"]
    cfg = pipeline.pipeline_config(parse("-c", str(path), *fast))
    assert (cfg.runtime.amp, cfg.runtime.channels_last, cfg.runtime.compile) == ("off", True, True)
    assert fast_path(cfg.runtime, torch.device("cpu")) == FastPath(None, True, True)

    auto = ["--precision", "auto", "--channels-last", "auto", "--compile", "auto"]
    cfg = pipeline.pipeline_config(parse("-c", str(path), *auto))
    assert fast_path(cfg.runtime, torch.device("cpu")) == FastPath(None, False, False)
    assert fast_path(cfg.runtime, torch.device("cuda")) == FastPath(torch.bfloat16, True, True)


def test_pipeline_rejects_a_bad_clip():
    from videoglore.errors import ConfigError

    with pytest.raises(ConfigError, match="--clip"):
        pipeline.pipeline_config(parse("--clip", "8x224"))
