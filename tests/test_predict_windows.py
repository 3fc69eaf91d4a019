"""predict --window/--stride: windows planned by the stated rules, every frame decoded once and
streamed into the views of the windows that use it, the views equal to decoding each window on
its own, and a video that changes class half-way named right before and after the change."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from data_prep.codec import write_video
from tests.helpers import _class_video, tiny_config
from tests.test_data_video import moving_video
from videoglore.cli import main
from videoglore.config import config_to_dict
from videoglore.data import build_dataset, model_input, video
from videoglore.data.sampling import TEST_SAMPLERS
from videoglore.data.video import decode_clip, read_clip
from videoglore.data.windows import (
    Window,
    WindowStream,
    plan_windows,
    window_clips,
    window_frames,
)
from videoglore.engine import inference
from videoglore.engine.checkpoint import save_checkpoint
from videoglore.engine.windows import predict_windows
from videoglore.models import build_model

FPS = 25


class _BatchRecorder:
    """A decord reader that records the size of every ``get_batch`` call."""

    def __init__(self, reader, sizes: list[int]) -> None:
        self.reader, self.sizes = reader, sizes

    def __len__(self) -> int:
        return len(self.reader)

    def get_batch(self, indices):
        self.sizes.append(len(indices))
        return self.reader.get_batch(indices)

    def seek(self, pos: int) -> None:
        self.reader.seek(pos)


def test_decord_reads_long_requests_in_bounded_batches(tmp_path, monkeypatch):
    """The decord path (B-frame files, webm) hands a long request over in batches of at most
    DECORD_BATCH frames, so a long video's frames are never all in memory at once."""
    path = tmp_path / "v.mp4"
    write_video(path, moving_video(40), keyframe_interval=250)
    indices = np.array([[0, 3, 3, 11], [19, 20, 21, 39]])
    whole = read_clip(path, lambda n: indices, reader="decord")
    sizes: list[int] = []
    real_open = video.open_video
    monkeypatch.setattr(video, "open_video", lambda p: _BatchRecorder(real_open(p), sizes))
    monkeypatch.setattr(video, "DECORD_BATCH", 3)
    batched = read_clip(path, lambda n: indices, reader="decord")
    assert sizes and max(sizes) <= 3 and sum(sizes) == 7  # the 7 distinct frames, once each
    np.testing.assert_array_equal(batched, whole)


@pytest.mark.parametrize(
    ("frames", "window", "stride", "expected"),
    [
        (100, 50, 25, [(0, 50), (25, 75), (50, 100)]),  # the last window ends on the last frame
        (110, 50, 25, [(0, 50), (25, 75), (50, 100), (60, 110)]),  # tail: moved back to the end
        (30, 50, 25, [(0, 30)]),  # shorter than one window: all of it, once
        (50, 50, 25, [(0, 50)]),
        (100, 25, 50, [(0, 25), (50, 75)]),  # stride > window: gaps
        (110, 25, 50, [(0, 25), (50, 75), (85, 110)]),
        (7, 3, 3, [(0, 3), (3, 6), (4, 7)]),
    ],
)
def test_plan_windows_follows_the_rules(frames, window, stride, expected):
    assert plan_windows(frames, window, stride) == expected


def test_window_length_comes_from_the_files_fps():
    assert window_frames(4, 25) == 100 and window_frames(2, 25) == 50
    assert window_frames(4, 30000 / 1001) == 120 and window_frames(2, 30000 / 1001) == 60
    assert window_frames(0.001, 25) == 1  # never empty


@pytest.mark.parametrize("sampling", sorted(TEST_SAMPLERS))
@pytest.mark.parametrize(("start", "end"), [(40, 140), (40, 45)])  # 45: shorter than a clip
def test_window_clips_are_the_test_rule_inside_the_window(sampling, start, end):
    clips = window_clips(start, end, 8, 8, 10, sampling)
    assert clips.shape == (10, 8)
    assert clips.min() >= start and clips.max() < end
    np.testing.assert_array_equal(clips - start, TEST_SAMPLERS[sampling](end - start, 8, 8, 10))


def _dataset(tiny_videos, tmp_path, path, **sections):
    cfg = tiny_config(tiny_videos, tmp_path / "run", **sections)
    record = inference.probed_record(path)
    return cfg, build_dataset(cfg, "test", records=[record]), record


def _stream(dataset, record, size: int, step: int, score):
    T, tau, K = dataset.num_frames, dataset.frame_interval, dataset.num_clips

    def plan(length: int) -> list[Window]:
        spans = plan_windows(length, size, step)
        return [
            Window(a, b, window_clips(a, b, T, tau, K, dataset.test_sampling)) for a, b in spans
        ]

    return WindowStream(plan, lambda w: dataset.empty_eval_views(record), score)


@pytest.mark.parametrize(
    ("reader", "output"), [("pyav", "rgb"), ("decord", "rgb"), ("pyav", "yuv420")]
)
def test_streamed_views_equal_each_window_decoded_alone(
    tiny_videos, tmp_path, monkeypatch, reader, output
):
    """One pass in frame order fills every window's views exactly as decoding that window on
    its own does; every needed frame is handed over once; few windows are open at a time."""
    path = tmp_path / "long.mp4"
    write_video(path, moving_video(120), fps=FPS, keyframe_interval=8)  # 48x64, 4.8 s
    monkeypatch.setattr(video, "DECORD_BATCH", 7)
    data = {"frame_interval": 2, "test_scale": 40, "reader": reader, "decode_output": output}
    cfg, dataset, record = _dataset(
        tiny_videos, tmp_path, path, data=data, test={"num_clips": 3, "num_crops": 3}
    )
    got = {}

    def score(w: Window, views) -> torch.Tensor:
        got[w.start] = views
        return torch.zeros(2)

    stream = _stream(dataset, record, size=30, step=10, score=score)  # 1.2 s every 0.4 s
    handed = []
    put = stream.put
    decode_clip(path, stream.indices_for, lambda f, s: handed.append(s[0]) or put(f, s), reader)

    assert [(w.start, w.end) for w in stream.windows] == [(s, s + 30) for s in range(0, 91, 10)]
    assert sorted(got) == [w.start for w in stream.windows] and len(stream.results()) == 10
    assert sorted(handed) == list(range(len(stream.needed)))  # each frame once
    assert 2 <= stream.max_open <= 30 // 10 + 1
    for w in stream.windows:
        alone = dataset.empty_eval_views(record)
        decode_clip(path, lambda n, w=w: w.clips, alone.put, reader)
        expected = alone.result()
        if output == "rgb":
            assert got[w.start].shape == (9, 3, 8, 32, 32)
            assert torch.equal(got[w.start], expected)
        else:
            assert torch.equal(got[w.start].planes, expected.planes)
            assert torch.equal(got[w.start].geometry, expected.geometry)


def test_a_file_with_b_frames_falls_back_to_decord_and_scores_each_window_once(
    tiny_videos, tmp_path
):
    """PyAV meets B-frames, decord plans the windows again and reads them in batches: every
    window is scored from decord's frames, as decoding it alone with decord gives them."""
    import av

    path = tmp_path / "b.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bf": "3", "crf": "18"}
        for frame in moving_video(90):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    _, dataset, record = _dataset(tiny_videos, tmp_path, path, data={"test_scale": 40})
    got = []
    windows = _stream(dataset, record, 30, 20, lambda w, views: got.append(views) or views.sum())
    decode_clip(path, windows.indices_for, windows.put, "pyav")
    assert [(w.start, w.end) for w in windows.windows] == [(0, 30), (20, 50), (40, 70), (60, 90)]
    assert len(windows.results()) == 4
    for w, views in zip(windows.windows, got[-4:], strict=True):
        alone = dataset.empty_eval_views(record)
        decode_clip(path, lambda n, w=w: w.clips, alone.put, "decord")
        assert torch.equal(views, alone.result())


def test_a_second_pass_from_the_start_scores_every_window_again(tiny_videos, tmp_path):
    """decode_clip hands frames again from the start after a failed seek: the windows scored
    in the first pass are scored again from the new frames, none twice in the results."""
    path = tmp_path / "short.mp4"
    frames = moving_video(60)
    write_video(path, frames, fps=FPS)
    _, dataset, record = _dataset(tiny_videos, tmp_path, path, data={"test_scale": 40})

    def score(w: Window, views) -> torch.Tensor:
        return views.float().mean().reshape(1)

    clean = _stream(dataset, record, 20, 10, score)
    needed = clean.indices_for(60)
    for position, index in enumerate(needed):
        clean.put(frames[index], [position])

    twice = _stream(dataset, record, 20, 10, score)
    twice.indices_for(60)
    for position, index in enumerate(needed[: len(needed) // 2]):  # a first pass, wrong frames
        twice.put(255 - frames[index], [position])
    assert twice.scores  # some windows were scored from those
    for position, index in enumerate(needed):
        twice.put(frames[index], [position])
    assert torch.equal(torch.stack(twice.results()), torch.stack(clean.results()))


@pytest.fixture(scope="module")
def brightness_checkpoint(tiny_videos, tmp_path_factory):
    """A checkpoint whose decision is known: the tiny net (random weights) with a classifier
    that is the nearest-class-mean rule on its pooled features of the training videos' test
    views. The two classes differ in brightness and motion, which the features carry."""
    tmp = tmp_path_factory.mktemp("brightness")
    cfg = tiny_config(tiny_videos, tmp / "run")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    train_views = tiny_config(
        tiny_videos, tmp / "run", data={"val_list": str(tiny_videos["train"])}
    )
    features = {0: [], 1: []}
    with torch.no_grad():
        for views, label, _ in build_dataset(train_views, "test"):
            x = model_input(views, cfg.data)  # (V, 3, T, S, S)
            features[label].append(model.forward_head(model.forward_features(x), pre_logits=True))
        m0, m1 = (torch.cat(features[c]).mean(dim=0) for c in (0, 1))
        w = 20 * (m1 - m0) / (m1 - m0).dot(m1 - m0)  # w . (f - mid) = +-10 at the class means
        b = w.dot((m0 + m1) / 2)
        model.classifier.weight.copy_(torch.stack([-w, w]))
        model.classifier.bias.copy_(torch.stack([b, -b]))
    state = {"model": model.state_dict(), "config": config_to_dict(cfg)}
    state["classes"] = ["class_0", "class_1"]
    path = str(save_checkpoint(state, tmp / "brightness.pt"))
    # the rule is right on the held-out videos, else the tests below would prove nothing
    val = sorted((tiny_videos["root"] / "videos" / "val").rglob("*.mp4"))
    for p in inference.predict([str(v) for v in val], path, topk=1, device="cpu"):
        assert p.labels[0][0] == p.video.split("/")[-2], p
    return path


@pytest.fixture(scope="module")
def changing_video(tmp_path_factory):
    """8.4 s at 25 fps, 32 px: class 0 for 4 s (frames 0..99), then class 1 (100..209)."""
    rng = np.random.default_rng(7)
    frames = np.concatenate([_class_video(0, 100, 32, rng), _class_video(1, 110, 32, rng)])
    path = tmp_path_factory.mktemp("changing") / "changing.mp4"
    write_video(path, frames, fps=FPS)
    return str(path)


# windows of 2 s every 1 s over 8.4 s: the last one is moved back to end at 8.4 s
TIMES = [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 8), (6.4, 8.4)]
TRUTH = ["class_0"] * 3 + [None] + ["class_1"] * 4  # None: the window across the change


def test_windows_name_the_class_before_and_after_the_change(
    brightness_checkpoint, changing_video, tmp_path, capsys
):
    out = tmp_path / "windows.csv"
    missing = str(tmp_path / "missing.mp4")
    argv = ["predict", changing_video, missing, "--checkpoint", brightness_checkpoint]
    argv += ["--window", "2", "--stride", "1", "--topk", "2", "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 2  # the missing file

    with open(out) as f:
        rows = list(csv.DictReader(f))
    windows, (mean, failed) = rows[:-2], rows[-2:]
    assert [r["window"] for r in windows] == [str(n) for n in range(8)]
    assert [(float(r["start"]), float(r["end"])) for r in windows] == TIMES
    for row, truth in zip(windows, TRUTH, strict=True):
        assert row["video"] == changing_video and row["error"] == ""
        assert {row["top1"], row["top2"]} == {"class_0", "class_1"}
        assert float(row["p1"]) + float(row["p2"]) == pytest.approx(1, abs=2e-4)
        if truth is not None:
            assert row["top1"] == truth and float(row["p1"]) > 0.9, row
    # the summary row: the windows' probabilities averaged, over the whole video
    assert (mean["window"], mean["start"], mean["end"]) == ("mean", "0.000", "8.400")
    p1 = [float(r["p1"] if r["top1"] == "class_1" else r["p2"]) for r in windows]
    assert mean["top1"] == "class_1" and float(mean["p1"]) == pytest.approx(np.mean(p1), abs=1e-3)
    assert failed["video"] == missing and failed["error"] == f"{missing}: file not found"

    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {missing}: file not found"
    lines = captured.out.splitlines()
    assert lines[0] == f"{changing_video}: 8 windows, 8.40 s at 25 fps"
    # the timeline: the window across the change owns 3..4 s, with either label
    timeline = [line.split() for line in lines[1:3]]
    assert timeline in (
        [["0.00", "-", "3.00", "s", "class_0"], ["3.00", "-", "8.40", "s", "class_1"]],
        [["0.00", "-", "4.00", "s", "class_0"], ["4.00", "-", "8.40", "s", "class_1"]],
    )


def test_json_output_has_windows_summary_and_timeline(
    brightness_checkpoint, changing_video, tmp_path
):
    out = tmp_path / "windows.json"
    argv = ["predict", changing_video, "--checkpoint", brightness_checkpoint, "--device", "cpu"]
    assert main([*argv, "--window", "4", "--out", str(out)]) == 0  # stride = window: 0, 4, 4.4

    (result,) = json.loads(out.read_text())
    assert result["video"] == changing_video and result["error"] == ""
    assert (result["fps"], result["frames"]) == (25.0, 210)
    spans = [(w["start"], w["end"]) for w in result["windows"]]
    assert spans == [(0.0, 4.0), (4.0, 8.0), (4.4, 8.4)]
    tops = [w["labels"][0]["label"] for w in result["windows"]]
    assert tops == ["class_0", "class_1", "class_1"]
    assert [s["label"] for s in result["timeline"]] == ["class_0", "class_1"]
    assert [(s["start"], s["end"]) for s in result["timeline"]] == [(0.0, 4.0), (4.0, 8.4)]
    probs = [label["probability"] for label in result["labels"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)


def test_the_heap_is_trimmed_after_every_window(brightness_checkpoint, changing_video, monkeypatch):
    """Without a trim per window glibc's heap grows with the number of windows (windows.py)."""
    from videoglore.engine import windows

    trims = []
    monkeypatch.setattr(windows, "_return_free_memory", lambda: trims.append(1))
    (result,) = predict_windows([changing_video], brightness_checkpoint, 2, 1, device="cpu")
    assert len(result.windows) == len(trims) == 8


def test_a_rotated_video_is_turned_upright_in_its_windows(
    brightness_checkpoint, tiny_videos, tmp_path, monkeypatch
):
    """A file whose display matrix says 90 degrees: each window's views are those ``test``
    builds for it (upright), not those of the frames as stored."""
    import dataclasses

    from videoglore.engine import windows

    path = tmp_path / "rotated.mp4"
    stored = np.ascontiguousarray(np.rot90(moving_video(40), 1, axes=(1, 2)))  # (40, 64, 48, 3)
    write_video(path, stored, fps=FPS, display_rotation=90)
    seen = []
    real = windows.view_scores
    monkeypatch.setattr(windows, "view_scores", lambda m, v, *a: seen.append(v) or real(m, v, *a))
    (result,) = predict_windows([str(path)], brightness_checkpoint, window=10, device="cpu")

    record = inference.probed_record(path)
    assert record.rotation == 90 and len(result.windows) == len(seen) == 1
    dataset = build_dataset(tiny_config(tiny_videos, tmp_path / "run"), "test", records=[record])
    assert torch.equal(seen[0], dataset.eval_views(record))
    as_stored = dataclasses.replace(record, rotation=0, width=48, height=64)
    assert not torch.equal(seen[0], dataset.eval_views(as_stored))


def test_command_line_overrides_set_the_views_of_every_window(
    brightness_checkpoint, changing_video, monkeypatch, capsys
):
    from videoglore.engine import windows

    shapes = []
    real = windows.view_scores
    monkeypatch.setattr(
        windows, "view_scores", lambda m, v, *a: shapes.append(tuple(v.shape)) or real(m, v, *a)
    )
    argv = ["predict", changing_video, "test.num_clips=1", "data.num_frames=4", "--window", "4"]
    assert main([*argv, "--checkpoint", brightness_checkpoint, "--device", "cpu"]) == 0
    assert shapes == [(1, 3, 4, 32, 32)] * 3  # windows 0-4, 4-8, 4.4-8.4 s
    assert capsys.readouterr().out.startswith(f"{changing_video}: 3 windows")


def test_a_video_shorter_than_one_window_is_scored_as_plain_predict_does(
    brightness_checkpoint, tiny_videos
):
    clip = str(tiny_videos["root"] / "videos" / "val" / "class_1" / "001.mp4")  # 16 frames
    (whole,) = predict_windows([clip], brightness_checkpoint, window=10, topk=2, device="cpu")
    (plain,) = inference.predict([clip], brightness_checkpoint, topk=2, device="cpu")
    assert [(w.start, w.end) for w in whole.windows] == [(0.0, 16 / FPS)]
    for got in (whole.windows[0].labels, whole.labels):
        assert [name for name, _ in got] == [name for name, _ in plain.labels]
        assert [p for _, p in got] == pytest.approx([p for _, p in plain.labels], abs=1e-6)


def test_a_window_shorter_than_a_clip_loops_inside_it_and_says_so(
    brightness_checkpoint, tiny_videos, caplog
):
    clips = sorted((tiny_videos["root"] / "videos" / "val").rglob("*.mp4"))[:2]  # 16 frames
    with caplog.at_level(logging.WARNING, logger="videoglore.engine.windows"):
        results = list(
            predict_windows([str(c) for c in clips], brightness_checkpoint, 0.2, device="cpu")
        )
    for r in results:  # 0.2 s = 5 frames; the model's clips are 8 frames
        assert r.error == ""
        assert [(w.start, w.end) for w in r.windows] == [
            (0, 0.2),
            (0.2, 0.4),
            (0.4, 0.6),
            (0.44, 0.64),
        ]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "shorter than one clip of the model (8 frames" in warnings[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--window", "0"], "predict --window must be a positive number of seconds, got 0.0"),
        (["--window", "nan"], "predict --window must be a positive number of seconds, got nan"),
        (["--window", "2", "--stride", "-1"], "predict --stride must be a positive number"),
        (["--stride", "1"], "predict --stride needs --window SECONDS"),
        (["--window", "2", "--topk", "0"], "predict --topk must be >= 1, got 0"),
        (["--window", "2", "--out", "w.txt"], "--out w.txt: name a .csv or .json file"),
    ],
)
def test_bad_window_arguments_are_one_line_before_any_work(tmp_path, capsys, flags, message):
    missing = str(tmp_path / "missing.pt")  # never read: the arguments fail first
    assert main(["predict", str(tmp_path / "a.mp4"), "--checkpoint", missing, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


def test_windows_need_a_checkpoint_not_an_onnx_model(tmp_path, capsys):
    argv = ["predict", str(tmp_path / "a.mp4"), "--model", str(tmp_path / "m.onnx")]
    assert main([*argv, "--window", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "error: predict --window scores with --checkpoint; --model (ONNX) cannot\n"
