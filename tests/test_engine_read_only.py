"""A run folder that turns read-only in the middle of a run (a remount, a quota, a permission
change): whichever write meets it first, the run stops on every rank with one ``error:`` line
naming the folder and the last checkpoint, earlier checkpoints stay intact and a rerun resumes.

The tests run as any user (root ignores permission bits), so the file system is simulated:
writes under the run folder fail with EROFS as the test says, new files at ``open`` and files
opened before (log.jsonl, the TensorBoard event file) at ``write``.
"""

import builtins
import errno
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_config_dict
from videoglore.cli import main
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.run_log import EventFile, read_log

READ_ONLY = os.strerror(errno.EROFS)


class _Faulty:
    """A file whose writes fail with EROFS once ``fails()`` says so."""

    def __init__(self, file, fails):
        self.file, self.fails = file, fails

    def write(self, data):
        if self.fails():
            raise OSError(errno.EROFS, READ_ONLY)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def _read_only_for(kind: str):
    """``(open_fails, write_fails)``: where the folder is read-only in case ``kind``.

    An epoch is 4 steps; each step appends one line to log.jsonl and one TensorBoard event, after
    a start line (and the event file's header). The faults begin in epoch 2.
    """
    seen = Counter()

    def open_fails(path: Path) -> bool:
        if kind == "checkpoint":
            return path.name.startswith(".epoch_0002.pt")
        if kind == "curves" and path.name.startswith(".curves.png"):
            seen["curves"] += 1
            return seen["curves"] == 2  # epoch 2's plot, after its checkpoint
        return False

    def write_fails(path: Path) -> bool:
        name = {"log": "log.jsonl", "tensorboard": "events.out.tfevents"}.get(kind)
        if name is None or not path.name.startswith(name):
            return False
        seen[kind] += 1
        return seen[kind] > 8  # start, 4 steps, checkpoint, epoch: fails at step 6

    return open_fails, write_fails


def _simulate(monkeypatch, run: Path, kind: str) -> None:
    open_fails, write_fails = _read_only_for(kind)
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        path = Path(file) if isinstance(file, str | os.PathLike) else None
        if path is None or "r" in mode or not path.is_relative_to(run):
            return real_open(file, mode, *args, **kwargs)
        if open_fails(path):
            raise OSError(errno.EROFS, READ_ONLY, str(path))
        return _Faulty(real_open(file, mode, *args, **kwargs), lambda: write_fails(path))

    monkeypatch.setattr(builtins, "open", open_)


CASES = {  # kind: (folder named, last checkpoint, iteration the rerun resumes at)
    "checkpoint": ("checkpoints", "epoch_0001.pt", 4),
    "log": ("", "epoch_0001.pt", 4),
    "curves": ("", "epoch_0002.pt", 8),
    "tensorboard": ("tb", "epoch_0001.pt", 4),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_a_folder_turning_read_only_stops_the_run_in_one_line(
    kind, tiny_videos, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    raw = tiny_config_dict(tiny_videos, run)
    raw["train"].update({"epochs": 3, "val_every": 0})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    folder, last, resume_at = CASES[kind]
    _simulate(monkeypatch, run, kind)

    assert main(["train", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    message = errors[0]
    assert message.startswith(f"error: cannot write to {run / folder if folder else run}: ")
    assert f"{READ_ONLY} (EROFS)" in message
    assert f"last checkpoint: {run / 'checkpoints' / last};" in message
    assert message.endswith("rerun the same command (on every node) to resume")

    # earlier checkpoints are intact, nothing half-written is left, and a rerun resumes
    assert ckpt.load_checkpoint(run / "checkpoints" / last)["iteration"] == resume_at
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert main(["train", "-c", str(config)]) == 0
    starts = [r["step"] for r in read_log(run / "log.jsonl") if r["kind"] == "start"]
    assert starts == [0, resume_at]
    assert ckpt.load_checkpoint(run / "checkpoints" / "epoch_0003.pt")["iteration"] == 12


def test_the_event_file_reads_back_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventFile(tmp_path / "tb")
    events.add_scalars("train_step", {"loss": 0.5, "lr": 0.25, "note": "x"}, 3, 100.0)
    events.add_scalars("epoch", {"val_top1": float("nan")}, 4, 101.0)  # nothing finite: no event
    events.add_scalars("epoch", {"val_top1": 0.75}, 4, 102.0)
    events.close()
    board = EventAccumulator(str(tmp_path / "tb"))
    board.Reload()
    assert sorted(board.Tags()["scalars"]) == ["epoch/val_top1", "train_step/loss", "train_step/lr"]
    read = {tag: board.Scalars(tag) for tag in board.Tags()["scalars"]}
    assert [(e.wall_time, e.step, e.value) for e in read["train_step/loss"]] == [(100.0, 3, 0.5)]
    assert [(e.step, e.value) for e in read["train_step/lr"]] == [(3, 0.25)]
    assert [(e.wall_time, e.step, e.value) for e in read["epoch/val_top1"]] == [(102.0, 4, 0.75)]
