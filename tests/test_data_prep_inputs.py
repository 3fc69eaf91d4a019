"""prepare on hostile or malformed inputs: one clear line, nothing written outside OUT.

Empty inputs fail ("no videos listed"), list entries outside the video root are refused and
reported (never opened), labels and splits can never steer an output file out of its folder,
non-UTF-8 text files and an ``--out`` that is a file fail with one line.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

import data_prep.encode as encode
import data_prep.sources as sources
from data_prep.errors import ConfigError, DataError
from data_prep.lists import read_classes, read_video_list
from data_prep.prepare import PrepareOptions, prepare
from data_prep.sources import class_folder, normalize_split
from tests.test_data_prep import read_rows, tiny_video
from videoglore.cli import main

CSV_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def run(out: Path, **kw):
    return prepare(PrepareOptions(str(out), **(dict(workers=1, progress=False) | kw)))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- empty inputs


def test_header_only_csv_fails_naming_the_file(tmp_path):
    good, empty = tmp_path / "train.csv", tmp_path / "val.csv"
    tiny_video(tmp_path / "videos" / "aaaaaaaaaaa_000001_000011.mp4")
    good.write_text(CSV_HEADER + "abseiling,aaaaaaaaaaa,1,11,train,0\n")
    empty.write_text(CSV_HEADER)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"^{empty}: no videos listed"):
        run(out, csv_files=[str(good), str(empty)], video_root=str(tmp_path / "videos"))
    assert not (out / "train.csv").exists() and not (out / "val.csv").exists()


def test_bad_inputs_fail_before_the_output_folder_is_made(tmp_path):
    """A typo in --root (or any input) used to leave an empty --out folder behind."""
    out = tmp_path / "out" / "k400"
    with pytest.raises(DataError, match="nope: video root is not a folder"):
        run(out, csv_files=[str(tmp_path / "k.csv")], video_root=str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_list_file_fails(tmp_path, text):
    lst = tmp_path / "train.txt"
    lst.write_text(text)
    with pytest.raises(DataError, match=f"^{lst}: no videos listed"):
        run(tmp_path / "out", lists={"train": str(lst)})


def test_folder_without_videos_fails(tmp_path):
    (tmp_path / "train" / "walking").mkdir(parents=True)
    (tmp_path / "train" / "walking" / "notes.txt").write_text("no video here")
    with pytest.raises(DataError, match=f"^{tmp_path / 'train'}: no videos listed"):
        run(tmp_path / "out", folders={"train": str(tmp_path / "train")})


def test_a_class_folder_that_cannot_be_listed_stops_before_any_video(tmp_path, monkeypatch):
    """Skipping it would drop its class from classes.json and shift every label after it
    (root ignores permission bits: the listing fails as for a user without read access)."""
    tree = tmp_path / "train"
    for name in ("a_class", "b_class", "c_class"):
        tiny_video(tree / name / "v.mp4")
    real = os.scandir

    def denied(path="."):
        if Path(path) == tree / "b_class":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(sources.os, "scandir", denied)
    with pytest.raises(DataError) as info:
        run(tmp_path / "out", folders={"train": str(tree)})
    assert str(info.value) == (
        f"{tree / 'b_class'}: cannot list it (Permission denied); make it readable and rerun "
        "(its videos would be left out)"
    )
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- outside the root


def test_list_entries_outside_the_root_are_refused_and_never_opened(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    tiny_video(root / "walking" / "inside.mp4")
    secret = tiny_video(outside / "secret.mp4")
    lst = tmp_path / "train.txt"
    lst.write_text(
        "walking/inside.mp4 walking\n"
        "../elsewhere/secret.mp4 walking\n"
        "walking/../../elsewhere/secret.mp4 walking\n"
        f"{secret} walking\n"
        f"{root / 'walking' / 'inside.mp4'} running\n"  # absolute, but inside the root: fine
    )
    opened = []
    real = encode.open_video  # re-encoding opens each source once, here
    monkeypatch.setattr(encode, "open_video", lambda p: opened.append(Path(p)) or real(p))
    out = tmp_path / "out"
    summary = run(out, lists={"train": str(lst)}, video_root=str(root), short_side=32)
    assert secret not in [p.resolve() for p in opened] and len(opened) == 2
    counts = summary.splits["train"]
    assert (counts.listed, counts.outside_root, counts.kept) == (5, 3, 2)
    refused = {r["video"]: r["reason"] for r in read_rows(out / "skipped.csv")}
    assert set(refused) == {
        "../elsewhere/secret.mp4",
        "walking/../../elsewhere/secret.mp4",
        str(secret),
    }
    for reason in refused.values():
        assert reason.startswith("outside_root:") and str(root) in reason
    assert "outside_root" in summary.format()


def test_without_root_the_list_folder_is_the_root(tmp_path):
    tiny_video(tmp_path / "lists" / "a" / "in.mp4")
    tiny_video(tmp_path / "up.mp4")
    lst = tmp_path / "lists" / "train.txt"
    lst.write_text("a/in.mp4 walking\n../up.mp4 walking\n")
    summary = run(tmp_path / "out", lists={"train": str(lst)}, reencode=False)
    assert (summary.splits["train"].kept, summary.splits["train"].outside_root) == (1, 1)


# --------------------------------------------------------------------------- labels and splits


@pytest.mark.parametrize(
    "label", ["..", ".", "", "   ", "a/../../b", "../x", "..\\..\\x", ".hidden", "a\0b", "/"]
)
def test_class_folder_is_one_safe_path_component(label):
    folder = class_folder(label)
    assert folder and folder not in (".", "..") and not folder.startswith(".")
    assert "/" not in folder and "\\" not in folder and "\0" not in folder
    assert Path("videos/train", folder).parent == Path("videos/train")


def test_class_folder_keeps_ordinary_names():
    assert class_folder("massaging person's head") == "massaging_person's_head"
    assert class_folder("hurling (sport)") == "hurling_(sport)"
    assert sources.path_component("clip 01") == "clip 01"  # file stems keep their spaces


def test_labels_never_place_a_file_outside_its_split_folder(tmp_path):
    root = tmp_path / "root"
    names = ["dotdot", "dot", "climb", "slashes", "back"]
    for name in names:
        tiny_video(root / f"{name}.mp4")
    lst = tmp_path / "train.txt"
    lst.write_text(
        "dotdot.mp4 ..\ndot.mp4 .\nclimb.mp4 a/../../b\nslashes.mp4 ../../x\nback.mp4 ..\\..\\y\n"
    )
    before = files_under(tmp_path)
    out = tmp_path / "out"
    summary = run(out, lists={"train": str(lst)}, video_root=str(root), short_side=32)
    assert summary.splits["train"].kept == 5
    written = files_under(tmp_path) - before
    videos = [p for p in written if p.suffix == ".mp4"]
    assert len(videos) == 5
    for path in videos:  # OUT/videos/train/<one folder>/<file>
        assert path.parent.parent == out / "videos" / "train"
    assert all(p.is_relative_to(out) for p in written)
    for record in read_video_list(out / "train.csv"):
        assert Path(record.path).is_file() and Path(record.path).is_relative_to(out / "videos")
    assert sorted(read_classes(out / "classes.json")) == sorted(
        ["..", ".", "a/../../b", "../../x", "..\\..\\y"]
    )


@pytest.mark.parametrize("split", ["../evil", "a/b", "..", ".", ""])
def test_unsafe_split_names_are_refused(tmp_path, split):
    with pytest.raises(DataError, match="is not a plain name"):
        normalize_split(split)
    tiny_video(tmp_path / "videos" / "aaaaaaaaaaa_000001_000011.mp4")
    annotations = tmp_path / "k.csv"
    with annotations.open("w", newline="") as f:
        csv.writer(f).writerows(
            [CSV_HEADER.strip().split(","), ["abseiling", "aaaaaaaaaaa", 1, 11, split, 0]]
        )
    with pytest.raises(DataError, match=f"{annotations}:2: split .* is not a plain name"):
        run(tmp_path / "out", csv_files=[str(annotations)], video_root=str(tmp_path / "videos"))
    tiny_video(tmp_path / "tree" / "walking" / "a.mp4")
    with pytest.raises(DataError, match="is not a plain name"):  # library callers name splits
        run(tmp_path / "out", folders={split: str(tmp_path / "tree")})
    assert not (tmp_path / "evil.csv").exists()


# --------------------------------------------------------------------------- encodings, --out

LATIN1 = "walking/caf\xe9.mp4 walking\n".encode("latin-1")  # é = 0xe9 at offset 11


@pytest.mark.parametrize("kind", ["csv", "list", "classes_txt", "classes_json"])
def test_non_utf8_input_fails_naming_the_file_and_the_byte(tmp_path, kind):
    tiny_video(tmp_path / "walking" / "a.mp4")
    good_list = tmp_path / "good.txt"
    good_list.write_text("walking/a.mp4 walking\n")
    bad = tmp_path / f"bad_{kind}"
    kw: dict = {"lists": {"train": str(good_list)}, "video_root": str(tmp_path)}
    if kind == "csv":
        bad.write_bytes(CSV_HEADER.encode() + "caf\xe9,aaaaaaaaaaa,1,11,train,0\n".encode("cp1252"))
        kw = {"csv_files": [str(bad)], "video_root": str(tmp_path)}
        where = f"byte 0xe9 at offset {len(CSV_HEADER) + 3}, line 2"
    elif kind == "list":
        bad.write_bytes(LATIN1)
        kw["lists"] = {"train": str(bad)}
        where = "byte 0xe9 at offset 11, line 1"
    elif kind == "classes_txt":
        bad = bad.with_suffix(".txt")
        bad.write_bytes(b"walking\n\xff\xferunning\n")
        kw["classes"] = str(bad)
        where = "byte 0xff at offset 8, line 2"
    else:
        bad = bad.with_suffix(".json")
        bad.write_bytes(b'["walking", "caf\xe9"]')
        kw["classes"] = str(bad)
        where = "byte 0xe9 at offset 16, line 1"
    with pytest.raises(DataError) as error:
        run(tmp_path / "out", **kw)
    assert str(error.value).startswith(f"{bad}: not UTF-8 text ({where})")
    assert "\n" not in str(error.value)


def test_utf8_with_a_byte_order_mark_is_read(tmp_path):
    tiny_video(tmp_path / "videos" / "aaaaaaaaaaa_000001_000011.mp4")
    annotations = tmp_path / "k.csv"  # as Excel saves it
    annotations.write_bytes(
        b"\xef\xbb\xbf" + (CSV_HEADER + "abseiling,aaaaaaaaaaa,1,11,train,0\n").encode()
    )
    summary = run(
        tmp_path / "out", csv_files=[str(annotations)], video_root=str(tmp_path / "videos")
    )
    assert summary.splits["train"].kept == 1


def test_prepared_list_not_utf8_fails(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(
        b"path,label,label_name,num_frames,fps,width,height\nx.mp4,0,caf\xe9,8,25,4,4\n"
    )
    expected = f"^{path}: not UTF-8 text \\(byte 0xe9 at offset 61, line 2\\)"
    with pytest.raises(DataError, match=expected):
        read_video_list(path)
    classes = tmp_path / "classes.json"
    classes.write_bytes(b'["caf\xe9"]')
    with pytest.raises(DataError, match=f"^{classes}: not UTF-8 text"):
        read_classes(classes)


def test_out_is_an_existing_file(tmp_path, capsys):
    tiny_video(tmp_path / "train" / "walking" / "a.mp4")
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    with pytest.raises(ConfigError, match=f"--out {out} is a file"):
        run(out, folders={"train": str(tmp_path / "train")})
    code = main(["prepare", "--out", str(out), "--folder", f"train={tmp_path / 'train'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --out") and err.count("\n") == 1
    assert out.read_text() == "keep me"


# --------------------------------------------------------------------------- sources that vanish


def test_a_source_deleted_during_the_run_is_missing_not_a_crash(tmp_path, monkeypatch):
    """A source deleted before its turn is skipped as missing (and nothing is recorded for it:
    a later run looks again); one deleted after its check is kept with the check's stat."""
    import data_prep.prepare as prepare_module

    tree = tmp_path / "src" / "train"
    for name in ("a_0", "a_1", "b_0", "b_1"):
        tiny_video(tree / name[0] / f"{name}.mp4")
    real = prepare_module.process_video

    def check_then_delete(video, **kw):
        key, source = video
        if key.endswith("a_0.mp4"):
            os.remove(source)  # gone before its check
        result = real(video, **kw)
        if key.endswith("b_1.mp4"):
            os.remove(source)  # gone after its check
        return result

    monkeypatch.setattr(prepare_module, "process_video", check_then_delete)
    out = tmp_path / "out"
    summary = run(out, folders={"train": str(tree)}, short_side=32)
    counts = summary.splits["train"]
    assert (counts.found, counts.missing, counts.broken, counts.kept) == (4, 1, 0, 3)
    skipped = read_rows(out / "skipped.csv")
    assert [(r["video"], r["reason"].split(":")[0]) for r in skipped] == [("a/a_0.mp4", "missing")]
    ledger = [
        json.loads(line) for line in (out / ".prepare/results.jsonl").read_text().splitlines()
    ]
    assert sorted(Path(r["key"]).name for r in ledger) == ["a_1.mp4", "b_0.mp4", "b_1.mp4"]
    assert all(r["source_size"] > 0 and r["source_mtime_ns"] > 0 for r in ledger)
    monkeypatch.setattr(prepare_module, "process_video", real)
    again = run(out, folders={"train": str(tree)}, short_side=32)
    assert (again.splits["train"].found, again.splits["train"].kept, again.reused) == (2, 2, 2)


def test_ledger_takes_a_vanished_source_for_unfinished(tmp_path):
    """The stat of a source gone since the listing means "not finished", never a traceback."""
    from data_prep.encode import VideoResult
    from data_prep.runner import ResultLedger

    source = tmp_path / "v.mp4"
    tiny_video(source)
    ledger = ResultLedger(tmp_path / "results.jsonl", {"reencode": False}, tmp_path)
    result = VideoResult("videos/train/a/v.mp4", str(source), "ok", frame_count=16)
    result.source_size, result.source_mtime_ns = 1, 2  # what the worker saw
    ledger.append(result)
    ledger.close()
    assert (
        ResultLedger(tmp_path / "results.jsonl", {"reencode": False}, tmp_path).records[result.key][
            "source_size"
        ]
        == 1
    )
    source.unlink()
    assert ledger.finished(result.key, str(source)) is None
