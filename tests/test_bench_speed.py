"""Speed benchmarks (``benchmark train`` / ``benchmark test``): CPU smoke runs with a tiny model,
GloRe's FLOP share against fvcore, MFU on hand numbers. Timing goals are not checked here."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from benchmarks.report import markdown_table
from benchmarks.speed import common as speed
from benchmarks.speed import test as bench_test
from benchmarks.speed import train as bench_train
from videoglore.cli import main
from videoglore.errors import ConfigError
from videoglore.models import GloRe, build_model

TINY = ["--models", "r50_glore", "--width", "0.0625", "--clip", "4x32x32", "--device", "cpu"]


def test_mfu_on_hand_numbers():
    # 10 GMACs/clip = 20 GFLOPs forward, 60 GFLOPs per training clip; 100 clips/s = 6 TFLOP/s
    assert speed.mfu(10e9, 100.0, 989.0, train=True) == pytest.approx(6.0 / 989.0)
    assert speed.mfu(10e9, 100.0, 312.0, train=False) == pytest.approx(2.0 / 312.0)
    assert speed.mfu(10e9, 100.0, None, train=True) is None  # CPU: n/a


def test_report_text_names_the_mfu_formula_and_peak():
    row = {"model": "r50", "clip": "8x224x224", "batch": 4, "precision": "bf16"}
    row |= {"channels_last": True, "compile": False, "videos_per_s": 2.5, "mfu": 0.25}
    report = {"device": {"peak_bf16_tflops": 989.0}, "rows": [row]}
    text = speed.format_report(report, bench_test.COLUMNS, "Testing speed here", "2 × MACs × x/s")
    first, blank, *table = text.splitlines()
    assert first == (
        "Testing speed here; MFU = 2 × MACs × x/s ÷ 989 TFLOPS (bf16 dense peak, every row)."
    )
    assert blank == "" and "| r50 | 8x224x224 | 4 | bf16 | on | off | 2.50 |" in table[2]
    assert table[2].endswith("| 25.0% |")
    report["device"]["peak_bf16_tflops"] = None
    text = speed.format_report(report, bench_test.COLUMNS, "On a CPU", "2 × MACs × x/s")
    assert text.startswith("On a CPU; MFU n/a (CPU or unknown peak; pass --peak-tflops).\n\n")


def test_peak_table_matches_device_names():
    assert speed.peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0  # H100 SXM
    assert speed.peak_tflops_for("NVIDIA H200") == 989.0
    assert speed.peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert speed.peak_tflops_for("NVIDIA H100 PCIe") is None  # lower peak: not guessed
    assert speed.peak_tflops(torch.device("cpu")) is None


def test_clip_option_errors_name_the_option():
    assert speed.parse_clip("8x224x224") == (8, 224, 224)
    with pytest.raises(ConfigError, match="--clip"):
        speed.parse_clip("8x224")


def test_a_failing_setting_becomes_an_error_row():
    args = argparse.Namespace(
        models=["r50"], clip="4x32x32", batch=2, precision=["fp32"], channels_last=["off", "on"]
    )
    args.compile = ["off"]

    def measure(name, variant, clip):
        if variant.channels_last:
            raise torch.OutOfMemoryError("simulated")
        return {"clips_per_s": 3.0}

    rows = speed.measure_all(args, torch.device("cpu"), measure)
    assert [r.get("clips_per_s") for r in rows] == [3.0, None]
    assert rows[1]["error"].startswith("out of memory") and rows[1]["clip"] == "4x32x32"
    table = markdown_table(rows, bench_train.COLUMNS)
    assert "| r50 | 4x32x32 | 2 | fp32 | on | off | out of memory" in table


def _glore_flop_share_by_fvcore(clip=(4, 32, 32)) -> float:
    model = build_model("r50_glore", width=0.0625).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, *clip))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_module = analysis.by_module()
    names = [n for n, m in model.named_modules() if isinstance(m, GloRe)]
    assert len(names) == 5  # +2 Res3, +3 Res4
    return sum(by_module[n] for n in names) / analysis.total()


def test_train_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "train"
    argv = ["benchmark", "train", *TINY, "--batch", "2", "--steps", "2", "--warmup", "1"]
    assert main([*argv, "--profile-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["benchmark"] == "train" and report["device"]["type"] == "cpu"
    (row,) = report["rows"]
    assert (row["model"], row["clip"], row["batch"], row["precision"]) == (
        "r50_glore",
        "4x32x32",
        2,
        "fp32",
    )
    assert row["channels_last"] is False and row["compile"] is False
    assert row["clips_per_s"] > 0 and row["step_ms"] > 0 and row["gmacs_per_clip"] > 0
    assert row["clips_per_s"] == pytest.approx(2 / (row["step_ms"] / 1000))
    assert row["mfu"] is None and row["peak_mem_gib"] is None  # CPU
    assert 0 < row["glore_time_share"] < 1
    assert 0 < row["glore_flop_share"] < 1
    assert row["glore_flop_share"] == pytest.approx(_glore_flop_share_by_fvcore(), rel=1e-9)
    table = out.with_suffix(".md").read_text()
    header = "| " + " | ".join(h for h, _, _ in bench_train.COLUMNS) + " |"
    assert header in table and header in printed
    assert "| r50_glore | 4x32x32 | 2 | fp32 | off | off |" in table
    assert "| n/a |" in table  # MFU on CPU


def test_test_benchmark_smoke(tmp_path):
    out = tmp_path / "test"
    argv = ["benchmark", "test", *TINY, "--batch", "2", "--steps", "1", "--warmup", "1"]
    assert main([*argv, "--num-clips", "2", "--num-crops", "3", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["setup"]["num_clips"] == 2 and report["setup"]["num_crops"] == 3
    (row,) = report["rows"]
    assert row["videos_per_s"] > 0 and row["step_ms"] > 0
    assert row["videos_per_s"] == pytest.approx(2 / (row["step_ms"] / 1000))
    assert row["views_per_s"] == pytest.approx(6 * row["videos_per_s"])
    assert row["mfu"] is None
    table = out.with_suffix(".md").read_text()
    assert "| " + " | ".join(h for h, _, _ in bench_test.COLUMNS) + " |" in table
    assert "2×3 views" in table


def test_default_settings_depend_on_the_device():
    args = argparse.Namespace(precision=None, channels_last=None, compile=None)
    cpu = speed.variants_from_args(args, torch.device("cpu"))
    cuda = speed.variants_from_args(args, torch.device("cuda"))
    assert cpu == [speed.Variant("fp32", False, False)]
    assert len(cuda) == 8 and {v.precision for v in cuda} == {"tf32", "bf16"}
