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
    assert "error: command line: data.num_frames must be >= 1, got 0" in _one_error_line(capsys)
    cfg.write_text(f"output:\n  dir: {tmp_path / 'run'}\ndata:\n  num_frames: 0\n")
    assert main(["train", "-c", str(cfg)]) == 2
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


# --- issue 17 item 8: every command answers bad input with one line --------------------------


def command_paths(parser=None, prefix=()) -> list[tuple[str, ...]]:
    """Every command the parser has, as argv prefixes: ("train",), ("benchmark", "data"), ...
    (read from the parser itself, so that a command added later is found here)."""
    import argparse

    from videoglore.cli import build_parser

    parser = parser or build_parser()
    if getattr(parser, "fill", None) is not None:  # lazy subcommand parsers: add their arguments
        parser.complete()
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += command_paths(sub, (*prefix, name)) or [(*prefix, name)]
    return found


# One bad argument per command ({tmp}: a fresh folder, {file}: a file in it) and what the one
# error line must say. A command missing here fails the test below until it is added.
BAD_ARGUMENTS = {
    ("prepare",): (["--out", "{tmp}/out", "--root", "{tmp}/nope", "--csv", "{tmp}/k.csv"],
                   "nope: video root is not a folder"),
    ("train",): (["model.width=100000"], "model.width must be <= 4, got 100000.0"),
    ("test",): (["--checkpoint", "{tmp}/nope.pt", "output.dir={tmp}/run"],
                "nope.pt: checkpoint file not found"),
    ("predict",): (["{tmp}/a.mp4", "--checkpoint", "{tmp}/nope.pt"], "checkpoint file not found"),
    ("demo",): (["--out", "{file}"], "is a file, not a folder"),
    ("export",): (["{tmp}/nope.pt", "--out", "{tmp}/m.onnx"], "nope.pt: checkpoint file not found"),
    ("flops",): (["nope"], "unknown model nope; choose one of: r50, r50_glore, r101, r101_glore"),
    ("download",): (["resnet50-lit"], "zoo:resnet50-lit is not a zoo name; did you mean "
                    "zoo:resnet50-lite?"),
    ("benchmark", "data"): (["--quick", "--cache", "{file}"], "Not a directory (ENOTDIR)"),
    ("benchmark", "glore"): (["--quick", "--out", "{file}"], "Not a directory (ENOTDIR)"),
    ("benchmark", "prepare"): (["--quick", "--cache", "{file}"], "Not a directory (ENOTDIR)"),
    ("benchmark", "lists"): (["--quick", "--cache", "{file}"], "a file stands where a folder is"),
    ("benchmark", "train"): (["--clip", "nope"], "--clip must look like 8x224x224"),
    ("benchmark", "test"): (["--clip", "nope"], "--clip must look like 8x224x224"),
    ("benchmark", "pipeline"): (["--clip", "nope"], "--clip must look like 8x8x224"),
}  # fmt: skip


@pytest.mark.parametrize("command", command_paths(), ids=" ".join)
def test_every_command_answers_bad_input_in_one_line(command, tmp_path, monkeypatch, capsys):
    """`run.py flops nope` printed a KeyError traceback. Exit 2 and one `error:` line."""
    assert command in BAD_ARGUMENTS, f"add a bad argument for `{' '.join(command)}` here"
    args, expected = BAD_ARGUMENTS[command]
    (tmp_path / "file.txt").write_text("in the way\n")
    monkeypatch.chdir(tmp_path)
    fill = {"tmp": str(tmp_path), "file": str(tmp_path / "file.txt")}
    assert main([*command, *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert expected in errors[0]


def test_bad_arguments_name_only_commands_that_exist():
    assert set(BAD_ARGUMENTS) == set(command_paths())


def test_a_config_error_answers_before_torch_loads(tmp_path):
    """A bad config is reported before the engine (torch) is imported: at once, and in a
    process that never allocates anything."""
    probe = (
        "import sys\nfrom videoglore.cli import main\n"
        "code = main(sys.argv[1:])\nprint(code, 'torch' in sys.modules)\n"
    )
    for command in ("train", "test"):
        done = subprocess.run(
            [sys.executable, "-c", probe, command, "train.lr=.inf"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout.split() == ["2", "False"], done.stderr
        assert done.stderr == ("error: command line: train.lr must be a finite number, got inf\n")


def test_an_alias_bomb_on_the_command_line_is_one_line():
    """``run.py train data.root=<9-level alias tree>`` hung formatting the type error."""
    from tests.test_config import bomb

    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
    code = limit + "import sys\nfrom videoglore.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    done = subprocess.run(
        [sys.executable, "-c", code, "train", f"data.root={bomb()}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: override 'data.root=[&l0 [lol, lol")
    assert done.stderr.count("\n") == 1 and len(done.stderr) < 400


# --- issue 17 item 9: out of memory is one line saying what to lower --------------------------

CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 4423680000000000 bytes. Error code 12 (Cannot allocate memory)"
)


def test_out_of_memory_turns_into_advice():
    import torch

    from videoglore.errors import TrainingError, explain_out_of_memory

    for exc, memory in [
        (RuntimeError(CPU_OOM), "memory"),
        (MemoryError(), "memory"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "GPU memory"),
    ]:
        with pytest.raises(TrainingError) as err, explain_out_of_memory("doing it", "lower x"):
            raise exc
        assert str(err.value) == f"out of {memory} doing it; lower x"
    with pytest.raises(RuntimeError, match="other"), explain_out_of_memory("doing it", "lower x"):
        raise RuntimeError("other")


def _tiny_config_file(videos, tmp_path, **sections) -> str:
    import yaml

    from tests.helpers import tiny_config_dict

    raw = tiny_config_dict(videos, tmp_path / "run")
    for section, values in sections.items():
        raw[section].update(values)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_out_of_memory_building_the_model_is_one_line(tiny_videos, tmp_path, monkeypatch, capsys):
    from videoglore.models import registry

    def no_memory(**kwargs):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setitem(registry.MODELS, "r50", no_memory)
    assert main(["train", "-c", _tiny_config_file(tiny_videos, tmp_path)]) == 2
    assert _one_error_line(capsys) == (
        "error: out of memory building the model r50 (model.width 0.0625, model.num_classes 2, "
        "model.glore_nodes 1.0); lower model.width, or free memory\n"
    )


def test_out_of_memory_in_the_first_step_is_one_line(tiny_videos, tmp_path, monkeypatch, capsys):
    from videoglore.engine import forward

    def no_memory(batch, data, device=None):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(forward, "model_input", no_memory)
    assert main(["train", "-c", _tiny_config_file(tiny_videos, tmp_path)]) == 2
    # The epoch's progress bar is not closed when a step raises (engine/trainer.py), so its
    # last state shares the terminal line with the error: look for the error inside the line.
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    said = err[err.index("error: ") :].split("\n")[0]
    assert said.startswith("error: out of memory at iteration 1 (epoch 1); lower train.batch_size")


def test_training_from_scratch_says_so(tiny_videos, tmp_path, caplog):
    """An empty model.pretrained and model.weights: one line at the start of training."""
    import logging

    caplog.set_level(logging.INFO)
    assert main(["train", "-c", _tiny_config_file(tiny_videos, tmp_path, train={"epochs": 0})]) == 0
    said = [r.getMessage() for r in caplog.records if "from scratch" in r.getMessage()]
    assert said == [
        "training r50 from scratch (random weights): model.pretrained and model.weights are "
        "empty; the released recipe starts from ImageNet weights, e.g. "
        "model.pretrained=zoo:resnet50-lite"
    ]
