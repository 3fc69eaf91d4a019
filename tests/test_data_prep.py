"""data_prep: inputs → located, checked, re-encoded videos → lists, classes, skips, resume."""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
from pathlib import Path

import av
import numpy as np
import pytest

import data_prep.encode as encode
from data_prep.classes import load_class_names, resolve_classes
from data_prep.codec import write_video
from data_prep.encode import EncodeSettings, output_size, process_video
from data_prep.lists import read_classes, read_video_list
from data_prep.prepare import PrepareOptions, add_arguments, options_from_args, prepare
from data_prep.sources import VideoEntry, index_video_root, read_kinetics_csv, read_plain_list
from data_prep.synthetic import write_motion_dataset
from videoglore.errors import ConfigError, DataError

DATA = Path(__file__).parent / "data"
K400 = load_class_names("kinetics400")
SHARED_K400 = Path("/work/shared/data/kinetics400/classes.txt")


# --------------------------------------------------------------------------- helpers


def tiny_video(path: Path, frames: int = 16, size=(48, 64), keyframe_interval: int = 250) -> Path:
    """Smoothly moving gradient, uint8 (T, H, W, 3), with a long GOP like YouTube downloads."""
    t, y, x, c = np.ogrid[:frames, : size[0], : size[1], :3]
    video = ((4 * x + 2 * y + 3 * t + 80 * c + len(path.name)) % 256).astype(np.uint8)
    write_video(path, video, fps=25, keyframe_interval=keyframe_interval)
    return path


def audio_only(path: Path, video_frames: int = 0) -> Path:
    """An .mp4 with an AAC track and, when ``video_frames``, an 80x60 H.264 track too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        if video_frames:  # every stream is added before the first packet is muxed
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 80, 60, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for i in range(video_frames):
            image = np.full((60, 80, 3), 8 * i, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if video_frames:
            container.mux(video.encode())
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


def keyframe_positions(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [i for i, p in enumerate(container.demux(stream)) if p.size and p.is_keyframe]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# Mini-Kinetics: (label, youtube_id, start, end, split, where, kind). `where` is the file's path
# under the root (None = missing); kinds: ok, empty, garbage, audio, truncated, one_frame.
CLIPS = [
    ("abseiling", "aaaaaaaaaaa", 1, 11, "train", "train/abseiling/{clip}.mp4", "ok"),
    ("air drumming", "-b_c-dddddd", 5, 15, "train", "train/air_drumming/{clip}.mp4", "ok"),
    ("hurling (sport)", "h_rl-123456", 0, 10, "train", "{id}.mp4", "ok"),  # flat, id-only name
    (
        "massaging person's head",
        "mmmmmmmmmmm",
        30,
        40,
        "train",
        "train/massaging person's head/{clip}.mp4",
        "ok",
    ),
    ("abseiling", "zerobyte000", 2, 12, "train", "train/abseiling/{clip}.mp4", "empty"),
    ("air drumming", "garbage0000", 3, 13, "train", "{clip}.mp4", "garbage"),
    ("hurling (sport)", "missing0000", 0, 10, "train", None, "missing"),
    ("abseiling", "audioonly00", 7, 17, "train", "train/abseiling/{clip}.mp4", "audio"),
    ("abseiling", "-valclip001", 0, 10, "validate", "val/abseiling/{clip}.mp4", "ok"),
    ("air drumming", "truncated01", 1, 11, "validate", "val/air drumming/{clip}.mp4", "truncated"),
    ("massaging person's head", "oneframe001", 4, 14, "validate", "val/{clip}.mp4", "one_frame"),
    ("hurling (sport)", "valmissing1", 9, 19, "validate", None, "missing"),
]
CLASSES = ["abseiling", "air drumming", "hurling (sport)", "massaging person's head"]


@pytest.fixture(scope="module")
def mini_kinetics(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kinetics")
    videos = root / "videos"
    for _label, yid, start, end, _split, where, kind in CLIPS:
        if where is None:
            continue
        clip = f"{yid}_{start:06d}_{end:06d}"
        path = videos / where.format(clip=clip, id=yid)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "ok":
            tiny_video(path)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(os.urandom(3000))
        elif kind == "audio":
            audio_only(path)
        elif kind == "truncated":
            data = tiny_video(path).read_bytes()
            path.write_bytes(data[: len(data) // 2])  # the moov atom is at the end: unopenable
        elif kind == "one_frame":
            tiny_video(path, frames=1)
    (videos / "notes.txt").write_text("not a video")
    (videos / ".hidden").mkdir()
    tiny_video(videos / ".hidden" / "aaaaaaaaaaa_000001_000011.mp4")  # must not be picked up
    csvs = []
    for split_name in ("train", "validate"):
        path = root / f"kinetics_{split_name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for label, yid, start, end, split, _, _ in CLIPS:
                if split == split_name:
                    writer.writerow([label, yid, start, end, split, 0])
            if split_name == "train":  # a repeated annotation row
                writer.writerow(["abseiling", "aaaaaaaaaaa", 1, 11, "train", 0])
        csvs.append(str(path))
    return {"root": videos, "csvs": csvs}


def kinetics_options(data: dict, out: Path, **kw) -> PrepareOptions:
    base = dict(
        csv_files=data["csvs"],
        video_root=str(data["root"]),
        short_side=32,
        keyframe_interval=4,
        workers=1,
        progress=False,
    )
    return PrepareOptions(out_dir=str(out), **(base | kw))


EXPECTED_TRAIN = [
    ("videos/train/abseiling/aaaaaaaaaaa_000001_000011.mp4", 0, "abseiling"),
    ("videos/train/air_drumming/-b_c-dddddd_000005_000015.mp4", 1, "air drumming"),
    ("videos/train/hurling_(sport)/h_rl-123456_000000_000010.mp4", 2, "hurling (sport)"),
    (
        "videos/train/massaging_person's_head/mmmmmmmmmmm_000030_000040.mp4",
        3,
        "massaging person's head",
    ),
]
EXPECTED_SKIPPED = {
    ("air drumming", "garbage0000_000003_000013", "train", "broken: cannot open or decode"),
    ("abseiling", "zerobyte000_000002_000012", "train", "broken: empty file"),
    ("abseiling", "audioonly00_000007_000017", "train", "broken: no video stream"),
    ("hurling (sport)", "missing0000_000000_000010", "train", "missing"),
    ("abseiling", "aaaaaaaaaaa_000001_000011", "train", "duplicate"),
    ("air drumming", "truncated01_000001_000011", "val", "broken: cannot open or decode"),
    ("massaging person's head", "oneframe001_000004_000014", "val", "too_short: 1 frames < 8"),
    ("hurling (sport)", "valmissing1_000009_000019", "val", "missing"),
}


# --------------------------------------------------------------------------- Kinetics CSV


def test_index_finds_clips_in_every_layout(mini_kinetics, tmp_path):
    index = index_video_root(mini_kinetics["root"])
    assert index["aaaaaaaaaaa_000001_000011"] == [
        mini_kinetics["root"] / "train/abseiling/aaaaaaaaaaa_000001_000011.mp4"
    ]  # the copy under .hidden is skipped
    assert "h_rl-123456" in index and "notes" not in index
    entries = read_kinetics_csv(mini_kinetics["csvs"][0], index)
    by_key = {e.key: e for e in entries}
    assert by_key["-b_c-dddddd_000005_000015"].source.parent.name == "air_drumming"
    assert by_key["h_rl-123456_000000_000010"].source.name == "h_rl-123456.mp4"
    assert by_key["missing0000_000000_000010"].source is None
    assert {e.split for e in entries} == {"train"}


def test_prepare_kinetics_csv(mini_kinetics, tmp_path):
    out = tmp_path / "out"
    summary = prepare(kinetics_options(mini_kinetics, out, workers=2))
    assert read_classes(out / "classes.json") == CLASSES
    train = read_rows(out / "train.csv")
    assert [(r["path"], int(r["label"]), r["label_name"]) for r in train] == EXPECTED_TRAIN
    assert {(r["num_frames"], r["width"], r["height"], r["fps"]) for r in train} == {
        ("16", "42", "32", "25.0")  # 64x48 → short side 32 → 42.7 → even 42
    }
    val = read_video_list(out / "val.csv")
    assert [(Path(r.path).name, r.label) for r in val] == [("-valclip001_000000_000010.mp4", 0)]
    assert Path(val[0].path).is_file()
    skipped = read_rows(out / "skipped.csv")
    got = {(r["video"], r["split"], r["reason"]) for r in skipped}
    assert len(got) == len(EXPECTED_SKIPPED) == len(skipped)
    for _, video, split, reason in EXPECTED_SKIPPED:
        assert any(v == video and s == split and r.startswith(reason) for v, s, r in got), video
    counts = {
        s: (c.listed, c.found, c.missing, c.duplicate, c.broken, c.too_short, c.kept)
        for s, c in summary.splits.items()
    }
    assert counts == {"train": (9, 8, 1, 1, 3, 0, 4), "val": (4, 3, 1, 0, 1, 1, 1)}
    assert summary.processed == 10 and summary.reused == 0 and summary.num_classes == 4
    assert summary.indexed_files == 10  # .hidden skipped, notes.txt is not a video
    text = summary.format()
    assert "train" in text and "too_short" in text and "4 classes" in text
    assert not (out / ".prepare" / "tmp").exists()
    # a second run redoes nothing and writes the same lists
    before = (out / "train.csv").read_text()
    again = prepare(kinetics_options(mini_kinetics, out))
    assert (again.processed, again.reused) == (0, 10)
    assert (out / "train.csv").read_text() == before


def test_interrupted_prepare_resumes_without_redoing_work(mini_kinetics, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = encode.transcode_video
    calls = []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third video is being encoded
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(encode, "transcode_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(kinetics_options(mini_kinetics, out))
    assert not (out / "train.csv").exists() and not (out / "skipped.csv").exists()
    assert not (out / ".prepare" / "tmp").exists()  # no partial file left anywhere
    finished = sorted(out.glob("videos/**/*.mp4"))
    assert len(finished) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in finished}

    counted = []

    def count_encoded(*args, **kwargs):  # broken videos fail inside: counted when written
        info = real(*args, **kwargs)
        counted.append(args[0])
        return info

    monkeypatch.setattr(encode, "transcode_video", count_encoded)
    summary = prepare(kinetics_options(mini_kinetics, out))
    assert (summary.reused, summary.processed) == (2, 8)
    # re-encoded now: the 2 other good train clips, the good val clip and the 1-frame clip
    assert set(counted).isdisjoint(calls) and len(counted) == 4
    assert {p: p.stat().st_mtime_ns for p in finished} == mtimes
    clean = tmp_path / "clean"
    prepare(kinetics_options(mini_kinetics, clean))
    for name in ("train.csv", "val.csv", "classes.json", "skipped.csv"):
        assert (out / name).read_text() == (clean / name).read_text(), name


def test_changed_settings_redo_the_work(mini_kinetics, tmp_path):
    out = tmp_path / "out"
    prepare(kinetics_options(mini_kinetics, out))
    summary = prepare(kinetics_options(mini_kinetics, out, short_side=16, reencode_changed=True))
    assert summary.reused == 0 and summary.processed == 10
    assert {r["height"] for r in read_rows(out / "train.csv")} == {"16"}


def test_changed_settings_never_redo_finished_work_unasked(mini_kinetics, tmp_path):
    """A rerun with other encode settings (a forgotten flag, a new default) would re-encode a
    whole dataset: it stops first, naming the settings of the finished videos and both ways on."""
    out = tmp_path / "out"
    prepare(kinetics_options(mini_kinetics, out, keyframe_interval=8))
    before = (out / ".prepare" / "results.jsonl").read_text()
    with pytest.raises(ConfigError) as info:
        prepare(kinetics_options(mini_kinetics, out, keyframe_interval=1))
    message = str(info.value)
    assert message.startswith(f"{out}: 6 videos here were prepared with keyframe_interval=8")
    assert "--keyframe-interval 8" in message and "--reencode-changed" in message
    assert "\n" not in message
    assert (out / ".prepare" / "results.jsonl").read_text() == before  # nothing touched
    summary = prepare(kinetics_options(mini_kinetics, out, keyframe_interval=8))
    assert summary.processed == 0 and summary.reused == 10


# --------------------------------------------------------------------------- encoding


def test_reencode_short_side_keyframes_no_audio(tmp_path):
    source = audio_only(tmp_path / "src.mp4", video_frames=24)
    settings = EncodeSettings(short_side=32, keyframe_interval=4)
    out = tmp_path / "out" / "a.mp4"
    result = process_video(("out/a.mp4", str(source)), settings, str(tmp_path), str(tmp_path))
    assert result.status == "ok", result.reason
    assert (result.frame_count, result.width, result.height) == (24, 42, 32)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (42, 32)
        assert stream.codec_context.name == "h264" and not container.streams.audio
        assert float(stream.average_rate) == 25.0
    assert keyframe_positions(source) == [0]  # the source has one GOP
    assert keyframe_positions(out) == [0, 4, 8, 12, 16, 20]
    assert sorted(os.listdir(tmp_path)) == ["out", "src.mp4"]  # temp file renamed away
    with av.open(str(source)) as container:
        assert container.streams.audio  # so "no audio" above means it was dropped


@pytest.mark.parametrize(
    "size, short_side, expected",
    [
        ((320, 240), 256, (320, 240)),
        ((480, 360), 256, (342, 256)),
        ((1280, 720), 256, (456, 256)),
        ((41, 31), 32, (40, 30)),
        ((64, 48), 32, (42, 32)),
        ((240, 320), 256, (240, 320)),
    ],
)
def test_output_size_never_upscales_and_is_even(size, short_side, expected):
    assert output_size(*size, short_side) == expected


def test_no_reencode_keeps_originals(mini_kinetics, tmp_path):
    out = tmp_path / "out"
    prepare(kinetics_options(mini_kinetics, out, reencode=False))
    train = read_video_list(out / "train.csv")
    assert (
        Path(train[0].path) == mini_kinetics["root"] / "train/abseiling/"
        "aaaaaaaaaaa_000001_000011.mp4"
    )
    assert (train[0].width, train[0].height, train[0].frame_count) == (64, 48, 16)
    assert not (out / "videos").exists()


# --------------------------------------------------------------------------- other inputs


def test_plain_list_with_names_spaces_and_indices(mini_kinetics, tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text(
        "train/abseiling/aaaaaaaaaaa_000001_000011.mp4 abseiling\n"
        "val/air drumming/truncated01_000001_000011.mp4 air drumming\n"
        "train/air_drumming/-b_c-dddddd_000005_000015.mp4\tair_drumming\n"
        "\n"
        "train/nowhere/gone.mp4 abseiling"
    )
    out = tmp_path / "out"
    summary = prepare(
        PrepareOptions(
            str(out),
            video_root=str(mini_kinetics["root"]),
            lists={"train": str(lst)},
            reencode=False,
            workers=1,
            progress=False,
        )
    )
    # 'air_drumming' is a Kinetics-400 folder spelling: it becomes the official name
    assert read_classes(out / "classes.json") == ["abseiling", "air drumming"]
    rows = read_rows(out / "train.csv")
    assert [(Path(r["path"]).name, r["label"]) for r in rows] == [
        ("aaaaaaaaaaa_000001_000011.mp4", "0"),
        ("-b_c-dddddd_000005_000015.mp4", "1"),
    ]
    reasons = {r["video"]: r["reason"].split(":")[0] for r in read_rows(out / "skipped.csv")}
    assert reasons == {
        "val/air drumming/truncated01_000001_000011.mp4": "broken",
        "train/nowhere/gone.mp4": "missing",
    }
    assert summary.splits["train"].kept == 2


def test_released_list_format_at_full_scale(tmp_path):
    text = gzip.decompress((DATA / "k400_val_list_released.txt.gz").read_bytes()).decode()
    assert not text.endswith("\n") and text.count("\n") == 19905
    lst = tmp_path / "val_list.txt"
    lst.write_text(text)
    entries = read_plain_list(lst, "val", root=tmp_path / "nothing")
    assert len(entries) == 19906
    first, last = entries[0], entries[-1]
    assert (first.key, first.label, first.name) == (
        "abseiling/0wR5jVB-WPk_000417_000427.mp4",
        0,
        "0wR5jVB-WPk_000417_000427",
    )
    assert (last.key, last.label) == ("zumba/ZVDR2od1gn8_000037_000047.mp4", 399)
    out = tmp_path / "out"
    summary = prepare(
        PrepareOptions(
            str(out), lists={"val": str(lst)}, video_root=str(tmp_path / "nothing"), progress=False
        )
    )
    # class names come from the folders (hurling_(sport) → hurling (sport)), in list order
    assert read_classes(out / "classes.json") == K400
    assert summary.splits["val"].missing == 19906 and summary.splits["val"].kept == 0
    assert read_rows(out / "val.csv") == []


def test_kinetics400_order_is_sorted_names():
    assert K400 == sorted(K400) and len(K400) == 400
    if SHARED_K400.is_file():
        assert K400 == SHARED_K400.read_text().splitlines()


def test_label_spellings_map_to_class_names():
    """--classes: every spelling must match (case, '_' vs space); without it, spellings that
    all match Kinetics-400 take the official names, any other set is kept as written."""
    from data_prep.classes import canonical_names

    assert canonical_names({"Walk_Fast", "run"}, ["walk fast", "run"]) == {
        "Walk_Fast": "walk fast",
        "run": "run",
    }
    with pytest.raises(DataError, match="1 label.*not in the class list.*'swim'"):
        canonical_names({"run", "swim"}, ["run"])
    assert canonical_names({"air_drumming", "Abseiling"}, None) == {
        "air_drumming": "air drumming",
        "Abseiling": "abseiling",
    }
    assert canonical_names({"air_drumming", "swim"}, None) == {
        "air_drumming": "air_drumming",
        "swim": "swim",
    }


def test_bundled_kinetics400_list_is_read_once(monkeypatch):
    import data_prep.classes as classes_module

    classes_module.bundled_names.cache_clear()
    reads = []
    files = classes_module.resources.files
    monkeypatch.setattr(
        classes_module.resources, "files", lambda pkg: reads.append(pkg) or files(pkg)
    )
    folders = ["abseiling", "air_drumming"]
    entries = [
        VideoEntry("train", f"{f}/{i}.mp4", i, Path(f"/v/{f}/{i}.mp4"), str(i))
        for i, f in enumerate(folders)
    ] + [VideoEntry("val", "x.mp4", "Air Drumming", Path("/v/x.mp4"), "x")]
    classes, label_of = resolve_classes(entries, None)
    assert classes == ["abseiling", "air drumming"] and label_of(entries[2]) == (1, "air drumming")
    assert load_class_names("kinetics400") == K400
    assert len(reads) == 1


def test_bad_inputs_raise_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("youtube_id,time_start,time_end,split\nabc,0,10,test\n")
    with pytest.raises(DataError, match="missing columns.*label"):
        prepare(PrepareOptions(str(tmp_path / "o"), csv_files=[str(bad)], video_root=str(tmp_path)))
    with pytest.raises(DataError, match="nothing to prepare"):
        prepare(PrepareOptions(str(tmp_path / "o")))
    lst = tmp_path / "l.txt"
    lst.write_text("a/x.mp4 walking\n")
    with pytest.raises(DataError, match="not in the class list.*'walking'"):
        prepare(
            PrepareOptions(str(tmp_path / "o"), lists={"train": str(lst)}, classes="kinetics400")
        )


def test_cli_arguments_parse_ids_and_splits():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--out",
            "o",
            "--csv",
            "a.csv",
            "b.csv",
            "--csv=-odd.csv",
            "--root",
            "r",
            "--list",
            "validation=v.txt",
            "--no-reencode",
            "--workers",
            "3",
        ]
    )
    options = options_from_args(args)
    assert options.csv_files == ["a.csv", "b.csv", "-odd.csv"] and options.lists == {"val": "v.txt"}
    assert (options.reencode, options.workers, options.short_side) == (False, 3, 256)
    assert options.keyframe_interval == 1 and options.min_frames == 8  # all-intra by default
    assert not options.reencode_changed


# --------------------------------------------------------------------------- synthetic


def test_synthetic_dataset_is_deterministic_and_prepares(tmp_path):
    def digest(folder: Path) -> dict:
        return {
            p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.mp4"))
        }

    kw = dict(videos_per_class=3, frames=16, size=(32, 32), seed=0, val_fraction=0.34)
    written = write_motion_dataset(tmp_path / "a", 6, **kw)
    write_motion_dataset(tmp_path / "b", 6, **kw)
    write_motion_dataset(tmp_path / "c", 6, **(kw | {"seed": 1}))
    assert {k: len(v) for k, v in written.items()} == {"train": 12, "val": 6}
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b and a.keys() == c.keys() and a != c
    assert "train/clockwise/clockwise_0000.mp4" in a and "val/up/up_0002.mp4" in a
    out = tmp_path / "out"
    summary = prepare(
        PrepareOptions(
            str(out),
            folders={"train": str(tmp_path / "a/train"), "val": str(tmp_path / "a/val")},
            short_side=32,
            workers=2,
            progress=False,
        )
    )
    assert read_classes(out / "classes.json") == sorted(
        ["left", "right", "up", "down", "clockwise", "anticlockwise"]
    )
    assert (summary.splits["train"].kept, summary.splits["val"].kept) == (12, 6)
    rows = read_video_list(out / "val.csv")
    assert {(r.frame_count, r.width, r.height) for r in rows} == {(16, 32, 32)}


def test_synthetic_motion_moves_the_shape():
    from data_prep.synthetic import render_motion_clip

    for motion, axis, sign in (("left", 2, -1), ("right", 2, 1), ("up", 1, -1), ("down", 1, 1)):
        clip = render_motion_clip(motion, np.random.default_rng(3), 16, (48, 48), noise=0.0)
        background = clip[0, 0, 0] if (clip[0, 0, 0] != clip[0, 24, 24]).any() else clip[0, -1, -1]
        mask = (clip != background).any(-1)  # (T, H, W)
        coords = np.nonzero(mask[0])[axis - 1].mean(), np.nonzero(mask[-1])[axis - 1].mean()
        assert sign * (coords[1] - coords[0]) > 5, motion
