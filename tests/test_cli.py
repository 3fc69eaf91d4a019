"""The command line: every subcommand explains itself, user errors are one clear line."""

import subprocess
import sys

import pytest

from benchmarks import BENCHMARKS
from tests.helpers import REPO
from videoglore.cli import main

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


@pytest.mark.parametrize(
    "command,override,message",
    [
        ("train", "data.num_frames=0", "data.num_frames must be >= 1, got 0"),
        ("test", "test.num_clips=0", "test.num_clips must be >= 1, got 0"),
        ("test", "test.num_clips=1000000", "GiB of uint8 pixels per video (limit 2 GiB)"),
    ],
)
def test_bad_config_values_stop_before_any_work(tmp_path, capsys, command, override, message):
    """Caught when the config loads: not 20 'unreadable videos', not 0 % with exit 0, not a
    46 GiB allocation."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"output:\n  dir: {tmp_path / 'run'}\n")
    assert main([command, "-c", str(cfg), override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
