"""Two-process DDP on CPU (gloo) through torchrun and the CLI: training where only rank 0 writes,
testing where every video of an uneven list is counted exactly once, and a rank killed in the
middle of a run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from data_prep.lists import read_video_list, write_video_list
from tests.helpers import REPO, tiny_config_dict
from videoglore.engine import checkpoint as ckpt
from videoglore.engine.run_lock import RunLock
from videoglore.engine.run_log import read_log


def _torchrun_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "run.py"),
        *args,
    ]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    cmd = _torchrun_command(*args)
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert (done.returncode == 0) == ok, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_ddp_train_then_test_on_two_gloo_processes(tiny_videos, tmp_path):
    # 5 distinct videos: ranks get 2 and 3 of them (ShardSampler, no padding)
    records = [*read_video_list(tiny_videos["val"]), *read_video_list(tiny_videos["train"])[:1]]
    write_video_list(tmp_path / "val5.csv", records)
    raw = tiny_config_dict(tiny_videos, tmp_path / "run")
    raw["data"]["val_list"] = str(tmp_path / "val5.csv")
    raw["train"].update({"epochs": 2, "sync_bn": True})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(raw))

    # while another process holds the run directory, both ranks stop (none waits forever)
    with RunLock(tmp_path / "run"):
        done = _torchrun("train", "-c", str(config), ok=False)
    assert done.stderr.count(f"PID {os.getpid()} on") == 2, done.stderr[-3000:]
    assert not (tmp_path / "run" / "log.jsonl").exists()

    done = _torchrun("train", "-c", str(config))
    assert done.stdout.count("training finished") == 1  # only rank 0 reports
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "curves.png",
        "log.jsonl",
        "tb",
    ]
    assert len(list((run / "tb").iterdir())) == 1  # one event file: rank 1 wrote none
    records_log = read_log(run / "log.jsonl")
    starts = [r for r in records_log if r["kind"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2 and starts[0]["global_batch"] == 4
    # 8 train videos / (2 ranks × 2 clips) = 2 iterations per epoch, each logged once
    assert [r["step"] for r in records_log if r["kind"] == "train_step"] == [1, 2, 3, 4]
    assert [p.name for p in ckpt.training_checkpoints(run)] == ["epoch_0001.pt", "epoch_0002.pt"]
    state = ckpt.load_checkpoint(run / "checkpoints" / "epoch_0002.pt")
    assert state["iteration"] == 4 and len(state["rng"]) == 2  # both ranks' RNG states
    assert not any(k.startswith("module.") for k in state["model"])

    done = _torchrun("test", "-c", str(config))
    assert done.stdout.count("videos tested: 5 (skipped 0)") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_videos"] == 5 and metrics["num_skipped"] == 0
    with open(run / "predictions.csv") as f:
        videos = [row["video"] for row in csv.DictReader(f)]
    assert videos == [r.path for r in records]  # each exactly once, in list order


def _ranks(launcher: subprocess.Popen) -> dict[int, int]:
    """RANK → PID of the processes a torchrun started (Linux /proc)."""
    ranks = {}
    for task in Path(f"/proc/{launcher.pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = next(v for v in env if v.startswith(b"RANK="))
            ranks[int(rank.split(b"=")[1])] = int(pid)
    return ranks


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_killed_rank_stops_the_other_and_the_run_resumes(tiny_videos, tmp_path):
    run = tmp_path / "run"
    raw = tiny_config_dict(tiny_videos, run)
    raw["data"]["num_workers"] = 1
    raw["train"].update({"epochs": 100, "val_every": 0, "ckpt_every_iters": 1})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(raw))
    launcher = subprocess.Popen(
        _torchrun_command("train", "-c", str(config)),
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not ckpt.training_checkpoints(run):
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.05)
        killed = _ranks(launcher)[1]
        os.kill(killed, signal.SIGKILL)  # a rank's node lost, an OOM kill
        out, _ = launcher.communicate(timeout=120)  # the other rank stops: no hang
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert f"Signal 9 (SIGKILL) received by PID {killed}" in out  # torchrun names the dead rank
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out[-3000:]  # rank 0 says what happened to it, in one line
    assert errors[0].startswith(
        ("error: training stopped by SIGTERM at iteration ", "error: rank 0 lost contact")
    ), errors[0]
    assert "; last checkpoint: " in errors[0] and "to resume" in errors[0]

    # the run resumes from its newest checkpoint
    newest = ckpt.load_checkpoint(ckpt.training_checkpoints(run)[-1])["iteration"]
    epochs = newest // 2 + 1  # 2 iterations per epoch
    _torchrun("train", "-c", str(config), f"train.epochs={epochs}")
    starts = [r["step"] for r in read_log(run / "log.jsonl") if r["kind"] == "start"]
    assert starts == [0, newest]
    final = ckpt.load_checkpoint(ckpt.training_checkpoints(run)[-1])
    assert final["iteration"] == 2 * epochs and len(final["rng"]) == 2
