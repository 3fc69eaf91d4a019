"""prepare from the official files of UCF101, HMDB51, SSv2 and the Kinetics-600/700 classes.

Each format is a generated miniature: the split files as released (CRLF, 1-based UCF101 labels,
HMDB51's 0/1/2 marks, SSv2's bracketed templates) over real AVI (MPEG-4) and WebM (VP9) files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from data_prep.classes import STANDARD_CLASSES, bundled_names, load_class_names
from data_prep.errors import ConfigError, DataError
from data_prep.lists import read_classes, read_video_list
from data_prep.prepare import PrepareOptions, prepare
from tests.test_data_prep import read_rows, tiny_video
from videoglore.cli import main


def write_clip(path: Path, codec: str, frames: int = 12, size=(48, 64)) -> Path:
    """A moving gradient in the container of ``path``'s extension (.avi, .webm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            ramp = np.arange(w)[None, :] * 3 + np.arange(h)[:, None] + 5 * t + len(path.name)
            image = np.repeat((ramp % 256).astype(np.uint8)[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def run(out: Path, **kw):
    base = dict(short_side=32, keyframe_interval=4, workers=1, progress=False)
    return prepare(PrepareOptions(str(out), **(base | kw)))


def rows(path: Path) -> list[tuple[str, int, str]]:
    return [(r["path"], int(r["label"]), r["label_name"]) for r in read_rows(path)]


def crlf(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())  # as released
    return path


# --------------------------------------------------------------------------- UCF101

# classInd order on purpose not alphabetical: classes.json keeps the file's order
UCF_CLASSES = ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]
UCF_FILE = {
    "YoYo": "YoYo",
    "ApplyEyeMakeup": "ApplyEyeMakeup",
    "HandstandPushups": "HandStandPushups",
}


@pytest.fixture(scope="module")
def ucf101(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ucf")
    videos, splits = root / "UCF-101", root / "ucfTrainTestlist"
    crlf(splits / "classInd.txt", [f"{i} {name}" for i, name in enumerate(UCF_CLASSES, 1)])
    for name in UCF_CLASSES:  # the file names spell one class differently, as UCF101 does
        for group in (1, 8):
            write_clip(videos / name / f"v_{UCF_FILE[name]}_g{group:02d}_c01.avi", "mpeg4")

    def line(name: str, group: int, label: bool) -> str:
        rel = f"{name}/v_{UCF_FILE[name]}_g{group:02d}_c01.avi"
        return f"{rel} {UCF_CLASSES.index(name) + 1}" if label else rel

    for split, train_group, test_group in ((1, 8, 1), (2, 1, 8)):
        train = [line(name, train_group, True) for name in UCF_CLASSES]
        if split == 1:
            train.append("YoYo/v_YoYo_g09_c01.avi 1")  # listed, never downloaded
        crlf(splits / f"trainlist{split:02d}.txt", train)
        crlf(splits / f"testlist{split:02d}.txt", [line(n, test_group, False) for n in UCF_CLASSES])
    return {"splits": str(splits), "root": str(videos)}


def test_ucf101_splits_share_the_videos(ucf101, tmp_path):
    out = tmp_path / "out"
    first = run(out, ucf101=ucf101["splits"], video_root=ucf101["root"], split=1)
    lists = out / "split1"
    assert first.lists_dir == str(lists) and "split1" in first.format()
    assert read_classes(lists / "classes.json") == UCF_CLASSES  # classInd's order, 0-based
    assert rows(lists / "train.csv") == [
        ("../videos/YoYo/v_YoYo_g08_c01.mp4", 0, "YoYo"),
        ("../videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mp4", 1, "ApplyEyeMakeup"),
        ("../videos/HandstandPushups/v_HandStandPushups_g08_c01.mp4", 2, "HandstandPushups"),
    ]
    val = read_video_list(lists / "val.csv")  # labels from the class folders
    assert [(Path(r.path).name, r.label) for r in val] == [
        ("v_YoYo_g01_c01.mp4", 0),
        ("v_ApplyEyeMakeup_g01_c01.mp4", 1),
        ("v_HandStandPushups_g01_c01.mp4", 2),
    ]
    assert all(Path(r.path).resolve().parent.parent == (out / "videos").resolve() for r in val)
    assert {(r.frame_count, r.width, r.height) for r in val} == {(12, 42, 32)}
    skipped = read_rows(lists / "skipped.csv")
    assert [(r["video"], r["reason"].split(":")[0]) for r in skipped] == [
        ("YoYo/v_YoYo_g09_c01.avi", "missing")
    ]
    assert not any((out / name).exists() for name in ("train.csv", "val.csv", "classes.json"))
    assert len(list((out / "videos").rglob("*.mp4"))) == 6

    before = {p: p.read_bytes() for p in lists.iterdir()}
    second = run(out, ucf101=ucf101["splits"], video_root=ucf101["root"], split=2)
    assert (second.processed, second.reused) == (0, 6)  # split 2 re-encodes nothing
    assert [Path(r.path).name for r in read_video_list(out / "split2" / "train.csv")] == [
        "v_YoYo_g01_c01.mp4",
        "v_ApplyEyeMakeup_g01_c01.mp4",
        "v_HandStandPushups_g01_c01.mp4",
    ]
    assert {p: p.read_bytes() for p in lists.iterdir()} == before  # split 1's files untouched


def test_ucf101_file_errors_name_the_file_and_line(ucf101, tmp_path):
    splits = tmp_path / "splits"
    crlf(splits / "classInd.txt", ["1 YoYo", "2 ApplyEyeMakeup"])
    crlf(splits / "testlist01.txt", ["YoYo/v_YoYo_g01_c01.avi"])
    crlf(splits / "trainlist01.txt", ["YoYo/v_YoYo_g08_c01.avi 1", "YoYo/v_YoYo_g09_c01.avi 2"])
    kw = dict(ucf101=str(splits), video_root=ucf101["root"])
    with pytest.raises(DataError, match=r"trainlist01.txt:2: label '2' does not match .*'YoYo'"):
        run(tmp_path / "out", **kw)
    with pytest.raises(DataError, match=r"trainlist03.txt: split file not found"):
        run(tmp_path / "out", **kw, split=3)
    crlf(splits / "classInd.txt", ["1 YoYo", "3 ApplyEyeMakeup"])
    with pytest.raises(DataError, match=r"classInd.txt:2: expected '2 ClassName'"):
        run(tmp_path / "out", **kw)
    with pytest.raises(DataError, match="--ucf101 needs --root"):
        run(tmp_path / "out", ucf101=str(splits))
    with pytest.raises(ConfigError, match="--ucf101 brings its own class list"):
        run(tmp_path / "out", **kw, classes="kinetics400")
    with pytest.raises(ConfigError, match="--ucf101 is a dataset of its own"):
        run(tmp_path / "out", **kw, folders={"train": str(tmp_path)})
    with pytest.raises(ConfigError, match="--split chooses a split of --ucf101 or --hmdb51"):
        run(tmp_path / "out", folders={"train": str(tmp_path)}, split=2)


def test_a_ucf101_list_given_as_a_plain_list_names_file_and_line(ucf101, tmp_path):
    """--list of a 1-based UCF101 file used to fail with no file or line in the message."""
    train = Path(ucf101["splits"]) / "trainlist01.txt"
    with pytest.raises(DataError) as error:
        run(tmp_path / "out", lists={"train": str(train)}, video_root=ucf101["root"])
    assert str(error.value).startswith(f"{train}:") and "--ucf101" in str(error.value)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(UCF_CLASSES) + "\n")
    with pytest.raises(DataError) as error:
        run(
            tmp_path / "o",
            lists={"train": str(train)},
            video_root=ucf101["root"],
            classes=str(classes),
        )
    assert str(error.value).startswith(f"{train}:3: label index 3 is out of range for 3 classes")


# --------------------------------------------------------------------------- HMDB51

# class → {video: (mark in split 1, mark in split 2)}; 1 = train, 2 = test, 0 = unused
HMDB = {
    "brush_hair": {"April_09_brush_hair_u_nm_np1_ba_goo_0": (1, 1), "Aussie_brush_hair_1": (2, 0)},
    "cartwheel": {"Bodenturnen_cartwheel_f_cm_np1_le_med_0": (1, 2), "cart_only_2": (0, 1)},
    "catch": {"Ball_hochwerfen_catch_u_cm_np1_fr_goo_0": (2, 1)},
}


@pytest.fixture(scope="module")
def hmdb51(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hmdb")
    for name, marks in HMDB.items():
        for video in marks:
            write_clip(root / "hmdb51_org" / name / f"{video}.avi", "mpeg4")
        for split in (1, 2):
            lines = [f"{video}.avi {mark[split - 1]} " for video, mark in marks.items()]
            crlf(root / "splits" / f"{name}_test_split{split}.txt", lines)
    return {"splits": str(root / "splits"), "root": str(root / "hmdb51_org")}


def listed(path: Path) -> list[str]:
    return sorted(Path(r.path).stem for r in read_video_list(path))


def test_hmdb51_splits_and_unused_videos(hmdb51, tmp_path):
    out, kw = tmp_path / "out", dict(hmdb51=hmdb51["splits"], video_root=hmdb51["root"])
    first = run(out, **kw)  # split 1 by default
    assert read_classes(out / "split1" / "classes.json") == ["brush_hair", "cartwheel", "catch"]
    by_mark = {
        m: sorted(v for c in HMDB.values() for v, ms in c.items() if ms[0] == m) for m in (1, 2)
    }
    assert listed(out / "split1" / "train.csv") == by_mark[1]
    assert listed(out / "split1" / "val.csv") == by_mark[2]
    assert read_rows(out / "split1" / "skipped.csv") == []  # "0" is not listed, not skipped
    assert first.processed == 4 and first.splits["train"].listed == 2

    second = run(out, **kw, split=2)
    assert (second.processed, second.reused) == (1, 3)  # only cart_only_2 is new in split 2
    assert "Aussie_brush_hair_1" not in listed(out / "split2" / "val.csv")
    keys = [
        json.loads(line)["key"]
        for line in (out / ".prepare/results.jsonl").read_text().splitlines()
    ]
    assert "videos/brush_hair/Aussie_brush_hair_1.mp4" in keys  # unused by split 2, remembered
    third = run(out, **kw, split=1)
    assert (third.processed, third.reused) == (0, 4)


def test_the_ledger_keeps_videos_a_later_run_does_not_list(tmp_path):
    """A rerun with fewer videos (HMDB51's next split, a trimmed list) compacted the ledger to its
    own videos, so the run after it re-encoded the others although their files were there."""
    for name in ("a_0", "a_1"):
        tiny_video(tmp_path / "src" / "a" / f"{name}.mp4")
    both, one = tmp_path / "both.txt", tmp_path / "one.txt"
    both.write_text("a/a_0.mp4 a\na/a_1.mp4 a\n")
    one.write_text("a/a_0.mp4 a\n")
    out, root = tmp_path / "out", str(tmp_path / "src")
    assert run(out, lists={"train": str(both)}, video_root=root).processed == 2
    assert run(out, lists={"train": str(one)}, video_root=root).processed == 0
    again = run(out, lists={"train": str(both)}, video_root=root)
    assert (again.processed, again.reused) == (0, 2)


def test_hmdb51_file_errors(hmdb51, tmp_path):
    splits = tmp_path / "splits"
    crlf(splits / "walk_test_split1.txt", ["a.avi 1", "b.avi 3"])
    with pytest.raises(DataError, match=r"walk_test_split1.txt:2: expected '<video>.avi 0\|1\|2'"):
        run(tmp_path / "out", hmdb51=str(splits), video_root=hmdb51["root"])
    with pytest.raises(DataError, match=r"no <class>_test_split2.txt files .*splits 1, 2, 3"):
        run(tmp_path / "out", hmdb51=str(splits), video_root=hmdb51["root"], split=2)


# --------------------------------------------------------------------------- SSv2

SSV2_LABELS = {
    "Holding something next to something": "0",
    "Putting something on a surface": "1",
    "Pretending to pick something up": "2",
}
SSV2 = {
    "train": [
        ("78687", "Holding [something] next to [something]", ["potato", "vicks vaporub bottle"]),
        ("42326", "Putting [something] on a surface", ["a mug"]),
        ("1001", "Pretending to pick [something] up", ["a pen"]),
    ],
    "validation": [("2002", "Putting [something] on a surface", ["keys"])],
}


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ssv2")
    for videos in SSV2.values():
        for video_id, *_ in videos:
            write_clip(root / "20bn-something-something-v2" / f"{video_id}.webm", "libvpx-vp9")
    return {"root": str(root / "20bn-something-something-v2"), "dir": root}


def write_ssv2_labels(folder: Path, prefix: str, videos=SSV2) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    for split, items in videos.items():
        data = [
            {"id": i, "label": " ".join(p), "template": t, "placeholders": p} for i, t, p in items
        ]
        (folder / f"{prefix}{split}.json").write_text(json.dumps(data, indent=1))
    return str(folder)


@pytest.mark.parametrize("prefix", ["", "something-something-v2-"])
def test_ssv2_templates_are_the_classes(ssv2, tmp_path, prefix):
    labels = write_ssv2_labels(tmp_path / "labels", prefix)
    out = tmp_path / "out"
    summary = run(out, ssv2=labels, video_root=ssv2["root"])
    assert read_classes(out / "classes.json") == list(SSV2_LABELS)  # labels.json's indices
    hold, put, pretend = SSV2_LABELS  # the brackets of each template removed
    assert rows(out / "train.csv") == [
        (f"videos/train/{hold.replace(' ', '_')}/78687.mp4", 0, hold),
        (f"videos/train/{put.replace(' ', '_')}/42326.mp4", 1, put),
        (f"videos/train/{pretend.replace(' ', '_')}/1001.mp4", 2, pretend),
    ]
    assert [(Path(r.path).name, r.label) for r in read_video_list(out / "val.csv")] == [
        ("2002.mp4", 1)
    ]
    assert summary.splits["train"].kept == 3 and summary.splits["val"].kept == 1


def test_ssv2_template_not_in_labels(ssv2, tmp_path):
    bad = {"train": [("78687", "Spinning [something]", ["a top"])], "validation": []}
    labels = write_ssv2_labels(tmp_path / "labels", "", bad)
    with pytest.raises(
        DataError, match=r"train.json: video 1 \(id '78687'\): 'Spinning something'"
    ):
        run(tmp_path / "out", ssv2=labels, video_root=ssv2["root"])


# --------------------------------------------------------------------------- Kinetics-600/700


def kinetics_csv(path: Path, rows: list[tuple[str, str, str]]) -> str:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows((label, yid, 0, 10, split) for label, yid, split in rows)
    return str(path)


def test_kinetics600_bundled_list():
    k600, k400 = load_class_names("kinetics600"), load_class_names("kinetics400")
    assert len(k600) == len(set(k600)) == STANDARD_CLASSES["kinetics600"]
    assert k600 == sorted(k600)  # the standard order is alphabetical
    assert len(set(k400) & set(k600)) == 368  # K600 kept 368 K400 classes as they were
    assert bundled_names("kinetics700") is None  # not bundled: derived from the CSVs


def test_kinetics600_labels_map_to_the_bundled_list(tmp_path):
    tiny_video(tmp_path / "videos" / "aaaaaaaaaaa_000000_000010.mp4")
    csv_path = kinetics_csv(
        tmp_path / "k600.csv",
        [
            ("acting_in_play", "aaaaaaaaaaa", "train"),  # folder spelling of a new class
            ("passing American football (not in game)", "bbbbbbbbbbb", "train"),
            ("zumba", "ccccccccccc", "validate"),
        ],
    )
    out = tmp_path / "out"
    run(out, csv_files=[csv_path], video_root=str(tmp_path / "videos"), classes="kinetics600")
    assert read_classes(out / "classes.json") == load_class_names("kinetics600")
    assert rows(out / "train.csv") == [
        ("videos/train/acting_in_play/aaaaaaaaaaa_000000_000010.mp4", 1, "acting in play")
    ]
    bad = kinetics_csv(
        tmp_path / "bad.csv", [("zumba", "a", "train"), ("air guitar", "b", "train")]
    )
    with pytest.raises(DataError, match=rf"^{bad}:3: 1 label\(s\) are not in the class list"):
        run(out, csv_files=[bad], video_root=str(tmp_path / "videos"), classes="kinetics600")


def test_kinetics700_classes_come_from_the_csvs(tmp_path, capsys):
    names = [f"action {i:03d}" for i in range(700)]
    train = kinetics_csv(
        tmp_path / "train.csv", [(n, f"t{i:010d}", "train") for i, n in enumerate(names)]
    )
    val = kinetics_csv(tmp_path / "val.csv", [(names[5], "v0000000001", "validate")])
    (tmp_path / "videos").mkdir()
    kw = dict(video_root=str(tmp_path / "videos"), classes="kinetics700")
    summary = run(tmp_path / "out", csv_files=[val, train], **kw)  # every video missing here
    assert read_classes(tmp_path / "out" / "classes.json") == sorted(names)
    assert summary.num_classes == 700 and summary.splits["val"].missing == 1

    # spellings differ only in case and "_": one class, the training CSV's spelling, in the
    # order of the names as written in the training CSV (case and "_" folded)
    mixed = [n.replace("action", "Action") if i == 9 else n for i, n in enumerate(names)]
    train_mixed = kinetics_csv(
        tmp_path / "mixed.csv", [(n, f"m{i:010d}", "train") for i, n in enumerate(mixed)]
    )
    val_mixed = kinetics_csv(tmp_path / "val2.csv", [("ACTION_005", "v0000000002", "validate")])
    run(tmp_path / "out2", csv_files=[val_mixed, train_mixed], **kw)
    assert read_classes(tmp_path / "out2" / "classes.json") == mixed

    short = kinetics_csv(tmp_path / "short.csv", [(n, "x", "train") for n in names[:699]])
    with pytest.raises(DataError, match="kinetics700: the annotations name 699 classes, not 700"):
        run(tmp_path / "o", csv_files=[short], **kw)
    stray = kinetics_csv(tmp_path / "stray.csv", [("dancing alone", "y", "validate")])
    with pytest.raises(
        DataError,
        match=rf"^{stray}:2: label 'dancing alone' \(val\) is not a label of the training CSV",
    ):
        run(tmp_path / "o", csv_files=[train, stray], **kw)
    code = main(
        [
            "prepare",
            "--out",
            str(tmp_path / "o"),
            "--csv",
            short,
            "--root",
            kw["video_root"],
            "--classes",
            "kinetics700",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --classes kinetics700") and err.count("\n") == 1
