"""prepare's summary (short videos per split), its printing by the CLI only, and the torch-free
floor: importing data_prep loads neither torch nor videoglore, and no data_prep module prints."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import data_prep
from data_prep.prepare import PrepareOptions, add_arguments, options_from_args, prepare
from tests.test_data_prep import tiny_video
from videoglore.cli import main

DATA_PREP = Path(data_prep.__file__).parent
MODULES = (
    *("prepare", "encode", "runner", "sources", "synthetic", "codec", "lists", "files"),
    *("options", "shards", "datasets", "classes", "faults"),
)


@pytest.fixture(scope="module")
def lengths_tree(tmp_path_factory) -> Path:
    """train: videos of 4, 16, 56, 57 and 80 frames; val: 20 frames."""
    root = tmp_path_factory.mktemp("lengths")
    for split, frames in (("train", (4, 16, 56, 57, 80)), ("val", (20,))):
        for n in frames:
            tiny_video(root / split / "walking" / f"f{n:03d}.mp4", frames=n)
    return root


def run(tree: Path, out: Path, **kw):
    folders = {"train": str(tree / "train"), "val": str(tree / "val")}
    base = dict(folders=folders, reencode=False, workers=1, progress=False)
    return prepare(PrepareOptions(str(out), **(base | kw)))


def test_summary_counts_kept_videos_shorter_than_one_clip(lengths_tree, tmp_path):
    summary = run(lengths_tree, tmp_path / "out")
    train, val = summary.splits["train"], summary.splits["val"]
    assert summary.clip_span == 57  # the 8x8 recipe: (8 - 1) * 8 + 1 frames
    assert (train.too_short, train.kept, train.under_one_clip) == (1, 4, 2)  # 16, 56 < 57
    assert (val.kept, val.under_one_clip) == (1, 1)
    text = summary.format()
    assert "under_one_clip" in text
    assert "3 kept videos are shorter than one clip of 57 frames" in text

    wide = run(lengths_tree, tmp_path / "out", clip_frames=32, clip_interval=2)
    assert wide.reused == 6 and wide.clip_span == 63  # only the count changes, nothing redone
    assert (wide.splits["train"].under_one_clip, wide.splits["val"].under_one_clip) == (3, 1)
    narrow = run(lengths_tree, tmp_path / "out", clip_frames=4, clip_interval=4)
    assert narrow.clip_span == 13 and narrow.splits["train"].under_one_clip == 0
    assert "shorter than one clip" not in narrow.format()


def test_clip_options_on_the_command_line(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = options_from_args(parser.parse_args(["--out", "o"]))
    assert (options.clip_frames, options.clip_interval) == (8, 8)
    args = parser.parse_args(["--out", "o", "--clip-frames", "16", "--clip-interval", "4"])
    assert (options_from_args(args).clip_frames, options_from_args(args).clip_interval) == (16, 4)
    with pytest.raises(data_prep.errors.ConfigError, match="--clip-interval must be at least 1"):
        prepare(PrepareOptions(str(tmp_path / "o"), clip_interval=0))
    with pytest.raises(data_prep.errors.ConfigError, match="^--crf must be at most 51, got 99$"):
        prepare(PrepareOptions(str(tmp_path / "o"), crf=99))
    assert not (tmp_path / "o").exists()


def test_cli_prints_the_summary_and_the_library_does_not(lengths_tree, tmp_path, capsys):
    folders = [f"--folder=train={lengths_tree / 'train'}", f"--folder=val={lengths_tree / 'val'}"]
    args = ["prepare", "--out", str(tmp_path / "out"), *folders, "--no-reencode", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    header = "split listed found missing outside_root duplicate broken unreadable too_short kept"
    assert out.splitlines()[0].split() == [*header.split(), "under_one_clip"]
    assert "shorter than one clip" in out
    run(lengths_tree, tmp_path / "out")
    assert capsys.readouterr() == ("", "")  # prepare() itself prints nothing


def test_no_data_prep_module_prints():
    for path in sorted(DATA_PREP.glob("*.py")):
        calls = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
        ]
        assert calls == [], f"{path.name} prints at lines {calls}; return the text instead"


def test_data_prep_is_the_torch_free_floor():
    code = (
        "import sys\n"
        + "".join(f"import data_prep.{m}\n" for m in MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'videoglore'))\n"
        + "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=DATA_PREP.parent,
        check=True,
    )
    assert done.stdout.strip() == ""


def test_plain_and_prepared_list_readers_have_distinct_names():
    import data_prep.lists as lists
    import data_prep.sources as sources

    assert hasattr(sources, "read_plain_list") and not hasattr(sources, "read_video_list_file")
    assert hasattr(lists, "read_video_list") and not hasattr(sources, "read_video_list")


def test_cli_defaults_are_the_options_defaults(monkeypatch):
    """One source for every default: the flags take theirs from ``PrepareOptions`` (help
    included), whose encode defaults are ``EncodeSettings``'; only the CLI draws a bar."""
    from dataclasses import dataclass

    import data_prep.options
    from data_prep.encode import EncodeSettings

    options = PrepareOptions("o")
    assert options.encode_settings() == EncodeSettings() and not options.progress
    assert PrepareOptions("o", short_side=64).encode_settings() == EncodeSettings(short_side=64)

    @dataclass
    class Other(PrepareOptions):
        crf: int = 30
        min_frames: int = 16
        clip_interval: int = 4

    monkeypatch.setattr(data_prep.options, "PrepareOptions", Other)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parsed = options_from_args(parser.parse_args(["--out", "o"]))
    assert parsed == Other("o", progress=True)
    text = " ".join(parser.format_help().split())
    assert "(default 30)" in text and "(default 16," in text and "(default 4: one clip" in text
    assert "(default 256)" in text and "(default 1; 1 = every frame a keyframe" in text
