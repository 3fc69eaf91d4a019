"""The prepared-list contract (data_prep/lists.py): header, column names, values, clear errors."""

from __future__ import annotations

import re

import pytest

from data_prep.errors import DataError
from data_prep.lists import VideoRecord, read_video_list, write_video_list

HEADER = "path,label,label_name,num_frames,fps,width,height,rotation"


def test_list_round_trip_keeps_values_and_the_column_names(tmp_path):
    """The clip-length clash is resolved in code only: the column stays ``num_frames``."""
    records = [
        VideoRecord("videos/a b/1.mp4", 0, "a b", 300, 29.97, 340, 256),
        VideoRecord("/abs/2.mp4", 3, "c,d", 12, 25.0, 0, 0),
    ]
    write_video_list(tmp_path / "l.csv", records)
    assert (tmp_path / "l.csv").read_text().splitlines()[0] == HEADER
    back = read_video_list(tmp_path / "l.csv", root="/data")
    assert back == [
        VideoRecord("/data/videos/a b/1.mp4", 0, "a b", 300, 29.97, 340, 256),
        VideoRecord("/abs/2.mp4", 3, "c,d", 12, 25.0, 0, 0),
    ]
    assert [type(v) for v in vars(back[0]).values()] == [str, int, str, int, float, int, int, int]


def test_list_errors_name_the_file_the_line_and_the_columns(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("path,label,label_name,frame_count,fps,width,height\nv.mp4,0,a,8,25,4,4\n")
    with pytest.raises(DataError) as info:
        read_video_list(path)
    assert str(info.value) == (
        f"{path}: not a prepared list, missing columns ['num_frames'] (expected header {HEADER})"
    )
    path.write_text(f"{HEADER}\nv.mp4,0,a,8,25,4,4\nw.mp4,1,b,eight,25,4,4\n")
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}:3: malformed row"):
        read_video_list(path)
    path.write_text(f"{HEADER}\nv.mp4,0,a,8\n")  # a short row
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}:2: malformed row"):
        read_video_list(path)


def test_one_clip_span_for_prepare_and_the_samplers():
    """Frames one clip covers, (T - 1) * τ + 1: prepare counts the shorter videos, the samplers
    loop them; both use the one definition on the torch-free floor."""
    from data_prep.lists import clip_span
    from data_prep.options import PrepareOptions
    from videoglore.data import sampling

    assert clip_span(8, 8) == 57 and clip_span(1, 8) == 1 and clip_span(4, 4) == 13
    assert sampling.clip_span is clip_span
    assert PrepareOptions("o", clip_frames=4, clip_interval=4).clip_span == 13
