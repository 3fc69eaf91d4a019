"""``run.py benchmark prepare`` in its CPU smoke mode: Kinetics-like sources, the real prepare."""

from __future__ import annotations

import argparse
import hashlib
import json

import av
from av.video.frame import PictureType

from benchmarks import load_benchmark
from benchmarks.prepare import bench
from benchmarks.prepare.sources import source_path, write_source


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_sources_look_like_youtube_downloads(tmp_path):
    """H.264 with B-frames and keyframes at the scene cuts (x264 defaults) plus AAC audio."""
    path = write_source(source_path(tmp_path, 128, 72, 3.0, 0), 128, 72, 3.0, 0)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 128, 72)
        assert video.average_rate == 30
        frames = list(container.decode(video))
    assert len(frames) == 90
    types = [PictureType(f.pict_type).name for f in frames]
    keys = [i for i, f in enumerate(frames) if f.key_frame]
    assert "B" in types and "P" in types
    assert keys[0] == 0 and len(keys) >= 2  # a cut at 2.5 s; x264 alone would wait 250 frames
    first = path.read_bytes()
    path.unlink()
    write_source(path, 128, 72, 3.0, 0)
    assert path.read_bytes() == first  # the same bytes every time


def test_prepare_benchmark_quick(tmp_path):
    out = tmp_path / "prepare"
    args = parse("--quick", "--cache", str(tmp_path / "cache"), "--out", str(out))
    result = bench.run(args)
    assert load_benchmark("prepare") is bench
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["rows"]
    assert [(r["size"], r["keyframe_interval"]) for r in rows] == [
        ("128x72", 1),
        ("128x72", 8),
        ("256x144", 1),
        ("256x144", 8),
    ]
    for row in rows:
        assert row["videos"] == 1 and len(row["output_sha256"]) == 1
        assert row["videos_per_s_per_core"] == 1 / row["cpu_s_per_video"]
        stages = row["stages_cpu_s_per_video"]
        assert set(stages) == {"probe", "transcode", "verify", "rest"}
        assert all(v >= 0 for v in stages.values()) and stages["transcode"] > 0
        assert row["cpu_s_per_video"] >= sum(stages.values()) - stages["rest"]
        assert row["gb_per_1000_videos"] == row["output_mb_per_video"]  # 1,000 x MB = GB
        hours = row["cpu_s_per_video"] * 300_000 / 16 / 3600
        assert row["hours"]["Kinetics-400 on 16 cores"] == hours
        digest = hashlib.sha256("".join(row["output_sha256"]).encode()).hexdigest()[:12]
        assert row["outputs_digest"] == digest and digest in result.table
    # all-intra files are larger than keyframe-every-8 files of the same source
    assert rows[0]["output_mb_per_video"] > rows[1]["output_mb_per_video"]
    assert "Kinetics-700 on 64 cores" in result.table
    assert out.with_suffix(".md").read_text() == result.table + "\n"
