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
