"""prepare --shard I/N on many machines sharing OUT, then the lists: plain rerun and --merge.

N shards started at once each do a disjoint part of the videos with their own ledger and temp
folder and write no lists; the merge then writes exactly what one unsharded run writes, without
redoing a video, and names the shards that have not finished.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import data_prep.prepare as prepare_module
from data_prep.errors import ConfigError, DataError, OutputError
from data_prep.prepare import PrepareOptions, prepare
from data_prep.shards import Shard, declare_settings, parse_shard, run_locks, shard_index
from tests.helpers import REPO
from tests.test_data_prep import read_rows, tiny_video
from videoglore.cli import main

PREPARED = ("train.csv", "val.csv", "classes.json", "skipped.csv")
HEADER = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
# (label, youtube id, split, kind): 9 good clips, a garbage file, a missing one, a repeated row
CLIPS = [
    *(("abseiling", f"abs{i:08d}", "train", "ok") for i in range(4)),
    *(("air drumming", f"air{i:08d}", "train", "ok") for i in range(3)),
    ("air drumming", "garbage0000", "train", "garbage"),
    ("abseiling", "missing0000", "train", "missing"),
    ("abseiling", "abs00000000", "train", "ok"),  # the same clip listed twice
    ("abseiling", "valabs00000", "validate", "ok"),
    ("air drumming", "valair00000", "validate", "ok"),
]


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shard_src")
    for label, yid, split, kind in CLIPS:
        path = root / "videos" / split / label / f"{yid}_000000_000010.mp4"
        if kind == "ok" and not path.exists():
            tiny_video(path)
        elif kind == "garbage":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(2000))
    csvs = []
    for split in ("train", "validate"):
        path = root / f"{split}.csv"
        with path.open("w", newline="") as f:
            rows = [(label, yid, 0, 10, s, 0) for label, yid, s, _ in CLIPS if s == split]
            csv.writer(f).writerows([HEADER, *rows])
        csvs.append(str(path))
    return {"root": str(root / "videos"), "csvs": csvs}


def options(data: dict, out: Path, **kw) -> PrepareOptions:
    base = dict(csv_files=data["csvs"], video_root=data["root"], short_side=32, keyframe_interval=4)
    return PrepareOptions(str(out), **(base | {"workers": 1, "progress": False} | kw))


def command(data: dict, out: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, str(REPO / "run.py"), "prepare", "--out", str(out)),
        *("--root", data["root"], "--csv", *data["csvs"]),
        *("--short-side", "32", "--keyframe-interval", "4", "--workers", "1", "--no-progress"),
        *extra,
    ]


def ledger(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ledger_keys(path: Path) -> list[str]:
    return [record["key"] for record in ledger(path)]


def same_outputs(a: Path, b: Path) -> None:
    for name in PREPARED:
        assert (a / name).read_text() == (b / name).read_text(), name


@pytest.fixture(scope="module")
def unsharded(kinetics, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unsharded")
    prepare(options(kinetics, out))
    return out


# --------------------------------------------------------------------------- which shard


def test_shards_partition_the_keys_stably_whatever_the_process():
    keys = [f"videos/train/class_{i % 7}/clip_{i:05d}.mp4" for i in range(3000)]
    owners = [shard_index(k, 4) for k in keys]
    parts = [sum(o == i for o in owners) for i in range(4)]
    assert sum(parts) == 3000 and all(600 < n < 900 for n in parts)  # roughly even
    assert [Shard(i, 4).owns(keys[0]) for i in range(4)].count(True) == 1
    code = (
        "from data_prep.shards import shard_index\n"
        f"print([shard_index(k, 4) for k in {keys[:200]!r}])"
    )
    for seed in ("0", "12345"):  # Python's own str hash changes with the seed; ours must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.stdout.strip() == str(owners[:200]), done.stderr


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "1", "a/b", "1/2/3"])
def test_bad_shard_flags_fail_in_one_line(text, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)
    code = main(["prepare", "--out", str(tmp_path / "o"), "--folder", "train=x", f"--shard={text}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --shard") and err.count("\n") == 1


def test_merge_and_shard_flags_that_do_not_fit(kinetics, tmp_path):
    with pytest.raises(ConfigError, match="--merge .* without --shard"):
        prepare(options(kinetics, tmp_path / "o", shard=Shard(0, 2), merge=True))
    with pytest.raises(ConfigError, match="--merge processes no video"):
        prepare(options(kinetics, tmp_path / "o", merge=True, reencode_changed=True))
    with pytest.raises(DataError, match="nothing is recorded .* run the shards"):
        prepare(options(kinetics, tmp_path / "o", merge=True))
    assert not (tmp_path / "o" / "train.csv").exists()


# --------------------------------------------------------------------------- N machines at once


def test_three_concurrent_shards_then_merge_equal_one_unsharded_run(kinetics, unsharded, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    jobs = [
        subprocess.Popen(
            command(kinetics, out, "--shard", f"{i}/3"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]  # all three started before any is waited for: they run at the same time
    logs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], logs
    for i, log in enumerate(logs):
        assert f"shard {i}/3 is done and writes no lists" in log
    assert not any((out / name).exists() for name in PREPARED)  # shards write no lists
    state = out / ".prepare"
    assert not (state / "results.jsonl").exists() and not (state / "tmp").exists()
    shard_keys = [
        ledger_keys(p) if (p := state / f"shard-{i}-of-3" / "results.jsonl").is_file() else []
        for i in range(3)
    ]
    assert sum(1 for keys in shard_keys if keys) >= 2  # the work was really split
    every = [k for keys in shard_keys for k in keys]
    assert len(every) == len(set(every))  # no video done twice
    assert sorted(every) == sorted(ledger_keys(unsharded / ".prepare" / "results.jsonl"))
    for i, keys in enumerate(shard_keys):
        assert all(shard_index(k, 3) == i for k in keys)

    merged = subprocess.run(command(kinetics, out, "--merge"), cwd=REPO, env=env, text=True,
                            capture_output=True)  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert f"0 videos processed, {len(every)} reused" in merged.stdout
    same_outputs(out, unsharded)
    again = prepare(options(kinetics, out))  # the plain command redoes nothing either
    assert (again.processed, again.reused, again.unfinished) == (0, len(every), [])
    same_outputs(out, unsharded)
    assert sorted(ledger_keys(state / "results.jsonl")) == sorted(every)  # the shards' taken in
    for i in range(3):
        shutil.rmtree(state / f"shard-{i}-of-3")  # so their folders may go
    assert prepare(options(kinetics, out)).processed == 0


def test_merge_names_unfinished_shards_and_the_plain_run_finishes_them(
    kinetics, unsharded, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    for i in (0, 2):
        summary = prepare(options(kinetics, out, shard=Shard(i, 3)))
        assert summary.shard == f"{i}/3" and not (out / "train.csv").exists()
    left = [k for k in ledger_keys(unsharded / ".prepare/results.jsonl") if shard_index(k, 3) == 1]
    assert left  # shard 1/3 owns some videos and has not run

    def never(*args, **kwargs):
        raise AssertionError("--merge processed a video")

    monkeypatch.setattr(prepare_module, "process_video", never)
    merged = prepare(options(kinetics, out, merge=True))
    assert (merged.pending, merged.unfinished, merged.processed) == (len(left), ["1/3"], 0)
    assert f"{len(left)} videos are not prepared yet and in no list" in merged.format()
    assert (
        "(shard 1/3 unfinished, or some of its videos could not be read: rerun it); then --merge "
        "again" in merged.format()
    )
    listed = {r["path"] for name in ("train.csv", "val.csv") for r in read_rows(out / name)}
    assert listed and listed.isdisjoint(left)  # what is recorded is listed, nothing else
    code = main(["prepare", *command(kinetics, out, "--merge")[3:]])
    assert code == 1  # lists written, but not complete

    monkeypatch.undo()
    done = prepare(options(kinetics, out))  # plain: reuse every ledger, do what is left
    assert (done.processed, done.unfinished, done.pending) == (len(left), ["1/3"], 0)
    assert "shard 1/3 left videos undone (unfinished, or some of its" in done.format()
    same_outputs(out, unsharded)


def test_a_shard_touches_no_other_runs_state(kinetics, tmp_path):
    out = tmp_path / "out"
    prepare(options(kinetics, out, shard=Shard(0, 2)))
    others = {
        out / ".prepare" / "tmp" / "partial.mp4": b"an unsharded run's partial file",
        out / ".prepare" / "shard-1-of-2" / "tmp" / "partial.mp4": b"shard 1's partial file",
        out / ".prepare" / "shard-1-of-2" / "results.jsonl": b'{"key": "cut',
    }
    for path, data in others.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    mine = out / ".prepare" / "shard-0-of-2" / "results.jsonl"
    lines = mine.read_text().splitlines()
    mine.write_text("\n".join(lines + lines) + "\n")  # superseded lines to compact away
    source = next(r["source"] for r in ledger(mine) if r["status"] == "ok")
    st = os.stat(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # changed: shard 0 redoes it
    try:
        summary = prepare(options(kinetics, out, shard=Shard(0, 2)))
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (summary.processed, summary.reused) == (1, len(lines) - 1)
    assert {p: p.read_bytes() for p in others} == others  # another run's files: untouched
    assert not (out / ".prepare" / "shard-0-of-2" / "tmp").exists()  # its own: cleared
    keys = ledger_keys(mine)
    assert len(keys) == len(set(keys)) == len(lines)  # compacted, nothing forgotten
    assert not any((out / name).exists() for name in PREPARED)


def test_runs_that_would_collide_are_refused(kinetics, tmp_path):
    out = tmp_path / "out"
    with run_locks(out, Shard(1, 2)):  # shard 1/2 is running (here: this test holds its locks)
        with pytest.raises(OutputError, match=rf"shard 1/2 is already running \(PID {os.getpid()}"):
            prepare(options(kinetics, out, shard=Shard(1, 2)))
        with pytest.raises(OutputError) as error:
            prepare(options(kinetics, out))
        assert f"shards 1/2 (PID {os.getpid()} on" in str(error.value)
        assert "--merge" in str(error.value) and "\n" not in str(error.value)
        prepare(options(kinetics, out, shard=Shard(0, 2)))  # another shard runs beside it
        assert prepare(options(kinetics, out, merge=True)).pending > 0  # --merge takes no lock
    with run_locks(out, None):
        with pytest.raises(OutputError, match="a prepare run without --shard is working here"):
            prepare(options(kinetics, out, shard=Shard(1, 2)))
    summary = prepare(options(kinetics, out))  # every lock released
    assert summary.pending == 0 and summary.unfinished == ["1/2"]


def test_shards_started_at_once_with_other_flags_are_refused(kinetics, tmp_path):
    """Shards started together have recorded nothing the ledgers could compare: each declares
    its encode settings while it runs, and a shard with others stops before any video."""
    out = tmp_path / "out"
    with run_locks(out, Shard(1, 2)):  # shard 1/2 runs with --keyframe-interval 8
        declare_settings(
            out,
            Shard(1, 2),
            options(kinetics, out).encode_settings().signature() | {"keyframe_interval": 8},
        )
        with pytest.raises(ConfigError) as error:
            prepare(options(kinetics, out, shard=Shard(0, 2)))
        assert str(error.value) == (
            f"{out}: shard 1/2 is running with other encode settings: keyframe_interval=8 "
            "(here 4); give every shard the same flags"
        )
        assert not (out / "videos").exists()  # stopped before any video
    # stopped: its declaration no longer counts (a shard that recorded videos is checked by
    # its ledger, as a rerun is)
    assert prepare(options(kinetics, out, shard=Shard(0, 2))).processed > 0
