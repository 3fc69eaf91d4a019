"""The command line: every subcommand explains itself, user errors are one clear line."""

import json
import subprocess
import sys

import pytest

from benchmarks import BENCHMARKS
from tests.helpers import REPO
from videoglore.cli import main
from videoglore.errors import ConfigError

SUBCOMMANDS = {
    "prepare": "--out",
    "train": "overrides",
    "test": "--checkpoint",
    "predict": "--topk",
    "demo": "--videos-per-class",
    "flops": "models",
}


@pytest.mark.parametrize("command,expected", sorted(SUBCOMMANDS.items()))
def test_subcommand_help(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: videoglore {command}" in text
    assert expected in text


def test_every_benchmark_has_help(capsys):
    assert "data" in BENCHMARKS
    for name in BENCHMARKS:
        with pytest.raises(SystemExit):
            main(["benchmark", name, "--help"])
        assert f"usage: videoglore benchmark {name}" in capsys.readouterr().out


def test_run_py_is_the_same_cli():
    done = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--help"], capture_output=True, text=True, check=True
    )
    for command in SUBCOMMANDS:
        assert command in done.stdout


def test_config_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epcohs: 3\n")
    assert main(["train", "-c", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "did you mean train.epochs?" in err
    assert "Traceback" not in err


def test_a_bad_config_value_stops_before_any_work(tmp_path, capsys):
    """Caught when the config loads (each key: test_config.BAD_VALUES): exit 2 with one line,
    and no run folder made."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"output:\n  dir: {tmp_path / 'run'}\n")
    assert main(["train", "-c", str(cfg), "data.num_frames=0"]) == 2
    assert f"error: {cfg}: data.num_frames must be >= 1, got 0" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err


def test_config_that_is_a_folder(tmp_path, capsys):
    assert main(["train", "-c", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: is a folder, not a YAML config file" in _one_error_line(capsys)


def test_config_that_is_not_utf8(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("train:\n  epochs: 3  # café\n".encode("latin-1"))
    assert main(["test", "-c", str(bad)]) == 2
    err = _one_error_line(capsys)
    assert f"error: {bad}: not UTF-8 text" in err
    assert "byte 0xe9 at offset 25, line 2" in err and "save it as UTF-8" in err


def test_demo_out_that_is_a_file(tmp_path, capsys):
    """A wrong --out value, as in ``prepare`` (data_prep/prepare.py): a ConfigError, not an
    OutputError (nothing failed to write), and the file is left alone."""
    from videoglore.demo import run_demo

    out = tmp_path / "results.txt"
    out.write_text("keep me\n")
    assert main(["demo", "--out", str(out)]) == 2
    expected = f"error: demo --out {out} is a file, not a folder; give a folder (made if missing)"
    assert expected in _one_error_line(capsys)
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_demo(REPO / "configs" / "demo.yaml", out)
    assert out.read_text() == "keep me\n"


def test_demo_defaults_to_the_shipped_config(tmp_path, monkeypatch, capsys):
    """`demo` without --config runs the shipped demo.yaml (resolved when the demo runs, so that
    building the CLI does not import the config module)."""
    from videoglore import demo
    from videoglore.config import shipped_config

    seen = []
    metrics = dict(num_videos=1, num_skipped=0, video_top1=1.0, video_top5=1.0, clip_top1=1.0)
    metrics |= dict(mean_class_accuracy=1.0, clip_top5=1.0)
    monkeypatch.setattr(demo, "run_demo", lambda config, *args: seen.append(config) or metrics)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert main(["demo", "--out", str(tmp_path / "demo"), "-c", "mine.yaml"]) == 0
    assert seen == [shipped_config("demo.yaml"), "mine.yaml"]
    assert "video top-1: 100.00%" in capsys.readouterr().out


@pytest.mark.parametrize("topk", ["-3", "0"])
def test_predict_topk_below_one(tmp_path, capsys, topk):
    ckpt = tmp_path / "best.pt"
    assert main(["predict", "clip.mp4", "--checkpoint", str(ckpt), "--topk", topk]) == 2
    assert f"error: predict --topk must be >= 1, got {topk}" in _one_error_line(capsys)


# Builds the parser and prints the top-level --help, then each subcommand's but `benchmark` (whose
# parsers come from the benchmark modules); reports the heavy modules loaded after each step.
HELP_PROBE = """
import contextlib, io, json, sys
from videoglore.cli import build_parser, main
build_parser()
loaded = {}
for argv in ([], *([c] for c in sys.argv[1:])):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    heavy = ("torch", "numpy", "av", "decord", "yaml", "videoglore.config")
    loaded[" ".join(argv)] = sorted(m for m in heavy if m in sys.modules)
print(json.dumps(loaded))
"""


def test_help_imports_no_torch():
    """`run.py --help` loads no torch, numpy, PyAV, decord, nor the config module and PyYAML
    (it answers in ~0.04 s, not 1.4 s); no subcommand's --help but benchmark's loads torch."""
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, *sorted(SUBCOMMANDS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert loaded[""] == []
    assert set(loaded) == {"", *SUBCOMMANDS}
    assert all("torch" not in modules for modules in loaded.values()), loaded
