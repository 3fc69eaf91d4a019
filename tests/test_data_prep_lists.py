"""The prepared-list contract (data_prep/lists.py): header, column names, values, clear errors,
and the VideoList that holds a read list in flat arrays."""

from __future__ import annotations

import csv
import gc
import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from data_prep import lists
from data_prep.errors import DataError
from data_prep.lists import VideoList, VideoRecord, read_video_list, write_video_list

HEADER = "path,label,label_name,num_frames,fps,width,height,rotation"
OLD_HEADER = "path,label,label_name,num_frames,fps,width,height"  # lists before rotation


def reference_read(path: Path, root: str | None = None) -> list[VideoRecord]:
    """The reader before VideoList (csv.DictReader, a pathlib join per row), as the reference."""
    base = Path(root) if root else path.parent
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
    return [
        VideoRecord(
            str(base / row["path"]),
            int(row["label"]),
            row["label_name"],
            int(row["num_frames"]),
            float(row["fps"]),
            int(row["width"]),
            int(row["height"]),
            int(row.get("rotation") or 0),
        )
        for row in rows
    ]


def test_list_round_trip_keeps_values_and_the_column_names(tmp_path):
    """The clip-length clash is resolved in code only: the column stays ``num_frames``."""
    records = [
        VideoRecord("videos/a b/1.mp4", 0, "a b", 300, 29.97, 340, 256),
        VideoRecord("/abs/2.mp4", 3, "c,d", 12, 25.0, 0, 0, 90),
    ]
    write_video_list(tmp_path / "l.csv", records)
    assert (tmp_path / "l.csv").read_text().splitlines()[0] == HEADER
    back = read_video_list(tmp_path / "l.csv", root="/data")
    assert isinstance(back, VideoList) and len(back) == 2
    assert list(back) == [
        VideoRecord("/data/videos/a b/1.mp4", 0, "a b", 300, 29.97, 340, 256, 0),
        VideoRecord("/abs/2.mp4", 3, "c,d", 12, 25.0, 0, 0, 90),
    ]
    assert [type(v) for v in vars(back[0]).values()] == [str, int, str, int, float, int, int, int]


def test_a_list_without_the_rotation_column_reads_as_upright(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(f"{OLD_HEADER}\r\nv.mp4,1,a,30,25.0,64,48\r\n")
    (record,) = read_video_list(path)
    assert record == VideoRecord(str(tmp_path / "v.mp4"), 1, "a", 30, 25.0, 64, 48, 0)
    write_video_list(tmp_path / "new.csv", [record])  # writers always write the column
    assert (tmp_path / "new.csv").read_text().splitlines()[1].endswith(",64,48,0")


def test_list_errors_name_the_file_the_line_and_the_columns(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("path,label,label_name,frame_count,fps,width,height\nv.mp4,0,a,8,25,4,4\n")
    with pytest.raises(DataError) as info:
        read_video_list(path)
    assert str(info.value) == (
        f"{path}: not a prepared list, missing columns ['num_frames'] (expected header {HEADER})"
    )
    start = f"^{re.escape(str(path))}"
    path.write_text(f"{HEADER}\nv.mp4,0,a,8,25,4,4,0\nw.mp4,1,b,eight,25,4,4,0\n")
    with pytest.raises(DataError, match=f"{start}:3: malformed row .*'num_frames': 'eight'.*"):
        read_video_list(path)
    path.write_text(f"{HEADER}\nv.mp4,0,a,8\n")  # a short row
    with pytest.raises(DataError, match=f"{start}:2: malformed row .*4 values for 8 columns"):
        read_video_list(path)
    path.write_text(f"{HEADER}\nv.mp4,0,a,8,25,4,4,0\n\n\nw.mp4,0,a,8,25,4,4,45\n")
    with pytest.raises(DataError) as info:  # the physical line, blank lines counted
        read_video_list(path)
    assert re.match(
        f"{start}:5: malformed row .*rotation must be one of 0, 90, 180, 270", str(info.value)
    )
    path.write_text(f'{HEADER}\n"q,{"x" * 5000}",0,a,8,25,4,4,zero\n')  # quoted: the csv path
    with pytest.raises(DataError, match=f"{start}:2: malformed row ") as info:
        read_video_list(path)
    assert len(str(info.value)) < 500  # the row is quoted through a bounded repr
    path.write_text(f"{HEADER}\nv.mp4,0,a,{10**30},25,4,4,0\n")  # no int64
    with pytest.raises(DataError, match=f"{start}:2: malformed row "):
        read_video_list(path)


TRICKY_ROWS = [
    # path, label, label_name, num_frames, fps, width, height, rotation
    ["videos/train/a b/x.mp4", "0", "a b", "300", "29.97", "340", "256", "0"],
    ["/abs/olute//y.mp4", "1", "b", "12", "25", "0", "0", "90"],
    ["./dot/./z.mp4", "2", "c", "1", "30.0", "256", "340", "180"],
    ["../up/trailing/", "3", "d", " 7 ", "+25.5", "4", "4", "270"],
    ["ünï/cødé ✓.mp4", "0", "a b", "1_000", "1e1", "2", "2", "0"],
    ["", "1", "b", "5", "nan", "8", "8", "0"],
]


@pytest.mark.parametrize("root", [None, ".", "/data", "/data/", "rel/dir", "/"])
@pytest.mark.parametrize("ending", ["\r\n", "\n"])
def test_the_reader_gives_what_the_reference_reader_gave(tmp_path, monkeypatch, root, ending):
    """Every value and every path exactly as the reader before VideoList gave them (pathlib
    joins: absolute kept, "." and "//" folded, ".." kept), read without the csv module when
    no field is quoted and with it otherwise, in chunks."""
    used = []
    plain, with_csv = lists._plain_rows, lists._csv_rows
    monkeypatch.setattr(lists, "_plain_rows", lambda t: used.append("plain") or plain(t))
    monkeypatch.setattr(lists, "_csv_rows", lambda t: used.append("csv") or with_csv(t))
    monkeypatch.setattr(lists, "CHUNK_CHARS", 64)  # several chunks of a few rows
    rows = TRICKY_ROWS * 7
    for name, extra in (("plain.csv", []), ("quoted.csv", [['q,"uo\nted".mp4', *"00" * 3, "0"]])):
        path = tmp_path / name
        with open(path, "w", newline="") as f:
            f.write("\ufeff")  # a byte-order mark is dropped
            writer = csv.writer(f, lineterminator=ending)
            writer.writerow(HEADER.split(","))
            writer.writerows(rows[:20] + extra + rows[20:])
            f.write(ending)  # a blank line, skipped
            writer.writerows(rows[:3])
        used.clear()
        videos = read_video_list(path, root=root)
        assert used == (["plain"] if name == "plain.csv" else ["plain", "csv"])
        expected = reference_read(path, root)
        assert len(videos) == len(expected) == len(rows) + len(extra) + 3
        assert [repr(v) for v in videos] == [repr(e) for e in expected]  # repr: nan == nan


def test_columns_in_another_order_extra_columns_and_old_lists(tmp_path):
    path = tmp_path / "l.csv"
    header = "height,width,note,fps,num_frames,label_name,label,path"
    path.write_text(f"{header}\n48,64,hi,25,30,a,1,v.mp4\n48,64,more,25,30,a,1,w.mp4,surplus\n")
    assert list(read_video_list(path)) == reference_read(path)
    assert read_video_list(path)[1].path == str(tmp_path / "w.mp4")


@pytest.mark.parametrize("base", [".", "/", "//", "/data", "/data/x", "rel", "rel/x"])
def test_paths_are_joined_as_pathlib_joins_them(base):
    """Plain relative paths are joined by concatenation (faster); it gives pathlib's string."""
    listed = ["a", "a/b.mp4", "a//b", "./a", "a/./b", "a/.", "a/", "/abs", "//abs/x", "..", "."]
    listed += ["../a", ".hidden/b", "a..b/c", "a/.../b", "", "ü/ñ", "a\\b"]
    videos = VideoList.of([VideoRecord(p, 0, "n", 1, 1.0, 1, 1) for p in listed])
    joined = VideoList(videos._paths, videos._offsets, videos._table, videos._names, base)
    assert [r.path for r in joined] == [str(Path(base) / p) for p in listed]
    assert [r.path for r in videos] == listed  # no base: as given


def test_a_video_list_is_a_sequence_of_records(tmp_path):
    records = [
        VideoRecord(f"v{i}.mp4", i % 3, f"class {i % 3}", 10 + i, 25.0 + i, 64, 48, 90 * (i % 4))
        for i in range(10)
    ]
    write_video_list(tmp_path / "l.csv", records)
    videos = read_video_list(tmp_path / "l.csv", root="/r")
    expected = [VideoRecord(f"/r/{r.path}", *list(vars(r).values())[1:]) for r in records]
    assert list(videos) == expected and len(videos) == 10
    assert videos[-1] == expected[-1] and videos[np.int64(3)] == expected[3]
    for bad in (10, -11):
        with pytest.raises(IndexError, match="out of range 0..9"):
            videos[bad]
    with pytest.raises(TypeError):
        videos[1.0]
    for part in (slice(2, 5), slice(None, None, -3), slice(8, 100), slice(5, 2)):
        sliced = videos[part]
        assert isinstance(sliced, VideoList) and list(sliced) == expected[part]
    assert list(videos[1::2][1:3]) == expected[1::2][1:3]
    assert VideoList.of(videos) is videos and list(VideoList.of(expected)) == expected
    assert videos.column("frame_count").tolist() == [10 + i for i in range(10)]
    assert videos.column("rotation").tolist() == [90 * (i % 4) for i in range(10)]
    assert videos.frame_sizes() == {(48, 64, 0), (48, 64, 90), (48, 64, 180), (48, 64, 270)}
    with pytest.raises(ValueError):
        videos.column("label")[0] = 5  # read-only: workers share the pages
    assert list(pickle.loads(pickle.dumps(videos))) == expected  # spawned workers


def test_a_read_list_holds_no_python_object_per_video(tmp_path):
    """The point of VideoList: forked workers read it without writing to shared pages, which
    only holds while there are no per-video Python objects (their reference counts)."""
    records = [
        VideoRecord(f"videos/{i}.mp4", i % 7, f"c{i % 7}", 50, 25.0, 64, 48) for i in range(20000)
    ]
    write_video_list(tmp_path / "l.csv", records)
    gc.collect()
    before = len(gc.get_objects())
    videos = read_video_list(tmp_path / "l.csv")
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert videos.nbytes < 20000 * 100  # paths (~15 B) + offsets (8 B) + one table row (56 B)
    assert [r.path for r in videos[:2]] == [
        str(tmp_path / "videos/0.mp4"),
        str(tmp_path / "videos/1.mp4"),
    ]


def test_one_clip_span_for_prepare_and_the_samplers():
    """Frames one clip covers, (T - 1) * τ + 1: prepare counts the shorter videos, the samplers
    loop them; both use the one definition on the torch-free floor."""
    from data_prep.lists import clip_span
    from data_prep.options import PrepareOptions
    from videoglore.data import sampling

    assert clip_span(8, 8) == 57 and clip_span(1, 8) == 1 and clip_span(4, 4) == 13
    assert sampling.clip_span is clip_span
    assert PrepareOptions("o", clip_frames=4, clip_interval=4).clip_span == 13


def test_benchmark_lists_quick_measures_a_generated_list(tmp_path):
    """``benchmark lists --quick``: a generated K700-like list read in a fresh process; the
    report has every measurement, the table every row, the list reads back here too."""
    import argparse
    import json

    from benchmarks.loading import lists as bench_lists

    parser = argparse.ArgumentParser()
    bench_lists.add_arguments(parser)
    out = tmp_path / "result" / "lists"
    args = parser.parse_args(["--quick", "--cache", str(tmp_path / "cache"), "--out", str(out)])
    result = bench_lists.run(args)
    assert result.files == [out.with_suffix(".json"), out.with_suffix(".md")]
    report = json.loads(out.with_suffix(".json").read_text())
    (row,) = report["rows"]
    assert (row["rows"], row["type"], row["code"]) == (2000, "VideoList", str(bench_lists.REPO))
    for key in ("read_cpu_s", "retained_mb", "peak_mb", "worker_uss_mb", "touch_us"):
        assert isinstance(row[key], float), key
    assert row["worker_uss_mb"] > 0 and row["read_cpu_s"] > 0
    videos = read_video_list(report["list"])
    assert len(videos) == 2000 and videos[0].path.startswith(str(tmp_path / "cache" / "videos"))
    assert (
        "| VideoList | 2000 |" in result.table
        and result.table == out.with_suffix(".md").read_text().strip()
    )
