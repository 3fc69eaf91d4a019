"""predict: every readable file gets its labels, each failure one line, folders expand to their
videos, results go to --out (csv or json), the exit status says whether something failed."""

import csv
import json
import shutil

import pytest
import torch

from tests.helpers import tiny_config
from videoglore.cli import main
from videoglore.config import config_to_dict
from videoglore.engine import inference
from videoglore.engine.checkpoint import save_checkpoint
from videoglore.errors import ConfigError
from videoglore.models import build_model


@pytest.fixture
def checkpoint(tiny_videos, tmp_path):
    cfg = tiny_config(tiny_videos, tmp_path / "run")
    torch.manual_seed(0)
    state = {
        "model": build_model(cfg.model).state_dict(),
        "config": config_to_dict(cfg),
        "classes": ["class_0", "class_1"],
    }
    return str(save_checkpoint(state, tmp_path / "model.pt"))


def test_one_bad_file_does_not_stop_the_others(checkpoint, tiny_videos, tmp_path, capsys):
    folder = tmp_path / "clips"
    shutil.copytree(tiny_videos["root"] / "videos" / "val", folder)  # class_0/, class_1/
    (folder / "notes.txt").write_text("not a video, not picked up")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "labels.csv"
    argv = [str(broken), str(folder), str(missing), "--checkpoint", checkpoint, "--topk", "2"]
    assert main(["predict", *argv, "--device", "cpu", "--out", str(out)]) == 2

    captured = capsys.readouterr()
    videos = sorted(str(p) for p in folder.rglob("*.mp4"))
    assert len(videos) == 4
    for video in videos:
        assert video in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2, captured.err
    assert errors[0].startswith(f"error: {broken}") and errors[1].startswith(f"error: {missing}")

    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["video"] for r in rows] == [str(broken), *videos, str(missing)]
    for row in rows[1:5]:
        assert row["error"] == "" and {row["top1"], row["top2"]} == {"class_0", "class_1"}
        assert float(row["p1"]) >= float(row["p2"])  # best first
        assert float(row["p1"]) + float(row["p2"]) == pytest.approx(1.0, abs=2e-4)
    assert rows[0]["error"].startswith(f"{broken}: cannot open or decode")
    assert rows[0]["top1"] == ""


def test_json_results_and_exit_0_when_all_files_are_read(checkpoint, tiny_videos, tmp_path):
    video = str(tiny_videos["root"] / "videos" / "val" / "class_1" / "000.mp4")
    out = tmp_path / "labels.json"
    assert (
        main(["predict", video, "--checkpoint", checkpoint, "--device", "cpu", "--out", str(out)])
        == 0
    )
    (result,) = json.loads(out.read_text())
    assert result["video"] == video and result["error"] == ""
    # the default top 5 of 2 classes: both, best first
    assert sorted(label["label"] for label in result["labels"]) == ["class_0", "class_1"]
    probs = [label["probability"] for label in result["labels"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_bad_arguments_are_one_line_before_any_work(checkpoint, tmp_path, capsys):
    assert main(["predict", str(tmp_path), "--checkpoint", checkpoint, "--out", "x.txt"]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()
    assert main(["predict", str(tmp_path), "--checkpoint", checkpoint]) == 2
    assert f"no videos found in {tmp_path}" in capsys.readouterr().err


def test_predict_refuses_topk_below_one_before_any_work(tmp_path):
    # the library checks it, not only the CLI: no checkpoint is read for a bad request
    with pytest.raises(ConfigError, match=r"--topk must be >= 1, got 0"):
        list(inference.predict(["clip.mp4"], tmp_path / "missing.pt", topk=0))


@pytest.mark.parametrize("window", [[], ["--window", "0.2"]])
def test_predict_scores_with_the_runtime_threads_and_gives_the_count_back(
    checkpoint, tiny_videos, monkeypatch, window
):
    """``runtime.threads`` (an override, or -c's runtime section) holds while predict scores,
    as in train and test; the caller's count is back afterwards."""
    seen = []
    real = inference.forward_views

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "forward_views", recording)
    caller = torch.get_num_threads()
    threads = 1 if caller > 1 else 2
    video = str(tiny_videos["root"] / "videos" / "val" / "class_0" / "000.mp4")
    argv = [video, "--checkpoint", checkpoint, *window, f"runtime.threads={threads}"]
    assert main(["predict", *argv, "--device", "cpu"]) == 0
    assert seen and set(seen) == {threads}
    assert torch.get_num_threads() == caller
