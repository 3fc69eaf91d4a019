"""Released test-clip positions (``test.sampling: released``) against a restatement of the rule of
facebookresearch/GloRe ``data/video_sampler.py`` (``EvenlySampling``), over many clip shapes and
video lengths, short videos included."""

import math

import numpy as np
import pytest

from data_prep.lists import VideoRecord
from tests.helpers import REPO
from videoglore.config import load_config
from videoglore.data import dataset
from videoglore.data.dataset import VideoClipDataset
from videoglore.data.sampling import (
    TEST_SAMPLERS,
    sample_test_clips,
    sample_test_clips_released,
)
from videoglore.errors import ConfigError


def released_clip(num_frames: int, T: int, tau: int, K: int, copy: int) -> list[int]:
    """Frame indices of the ``copy``-th of ``K`` test clips, restated from the released sampler.

    A clip covers ``span`` frames. If the video is shorter, its frames are taken one after the
    other from frame 0, starting over at the end, whatever the copy. Otherwise the frames left
    over by K clips are shared out: K clips that fill the video exactly sit end to end; with
    frames to spare, K + 1 equal gaps surround them and each start is rounded up; with too few,
    the K clips overlap evenly from the first frame to the last and each start is truncated.
    The arithmetic is Python floats in the released order.
    """
    span = (T - 1) * tau + 1
    if span > num_frames:
        return [i % num_frames for i in range(T)]
    spare = num_frames - span * K
    if spare == 0:
        start = copy * span
    elif spare > 0:
        stride = spare / float(K + 1) + span
        start = math.ceil((copy + 1) * stride - span)
    else:
        stride = spare / float(K - 1) + span
        start = int(copy * stride)
    return list(range(start, start + span, tau))


SHAPES = [(T, tau) for T in (1, 2, 4, 8, 16) for tau in (1, 2, 4, 8)]
LENGTHS = list(range(1, 130)) + list(range(130, 1300, 7))


@pytest.mark.parametrize("K", [1, 2, 3, 5, 10])
def test_released_positions_match_the_restated_rule(K):
    for T, tau in SHAPES:
        for n in LENGTHS:
            got = sample_test_clips_released(n, T, tau, K)
            assert got.shape == (K, T) and got.dtype == np.int64
            want = [released_clip(n, T, tau, K, copy) for copy in range(K)]
            assert got.tolist() == want, (n, T, tau, K)
            assert got.min() >= 0 and got.max() < n


def test_released_centre_clip_rounds_up_where_ours_rounds_down():
    # 102 frames, span 7: 95 spare frames, gap 47.5 on each side
    assert sample_test_clips_released(102, 4, 2, 1).tolist() == [[48, 50, 52, 54]]
    assert sample_test_clips(102, 4, 2, 1).tolist() == [[47, 49, 51, 53]]


def test_released_float_rounding_is_kept():
    # 715 frames, 5 clips of 8x8 (span 57), 430 spare frames: the 3rd start is exactly
    # 3 * 430 / 6 + 2 * 57 = 329, but the released float arithmetic gives 329.00000000000006,
    # which it rounds up to 330; we reproduce the released value
    starts = sample_test_clips_released(715, 8, 8, 5)[:, 0].tolist()
    assert starts == [released_clip(715, 8, 8, 5, c)[0] for c in range(5)]
    assert starts[2] == 330


def test_released_short_video_repeats_consecutive_frames():
    assert sample_test_clips_released(5, 8, 8, 1).tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    clips = sample_test_clips_released(10, 8, 8, 3)
    assert clips.tolist() == [list(range(8))] * 3  # every copy is the same clip
    ours = sample_test_clips(10, 8, 8, 3)  # ours keeps the stride and spreads the starts
    assert ((ours[:, 1:] - ours[:, :-1]) % 10 == 8).all()


def test_released_overlapping_clips_span_the_video():
    clips = sample_test_clips_released(100, 8, 8, 3)  # 3 × 57 > 100: overlap
    assert clips[0, 0] == 0 and clips[-1, -1] == 99


@pytest.mark.parametrize("args", [(0, 8, 8, 1), (10, 0, 8, 1), (10, 8, 0, 1), (10, 8, 8, 0)])
def test_released_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        sample_test_clips_released(*args)


@pytest.mark.parametrize("mode", ["val", "test"])
@pytest.mark.parametrize("rule", ["uniform", "released"])
def test_dataset_uses_the_configured_rule(mode, rule, monkeypatch):
    """The dataset's decoder records the frame indices asked for and gives black frames."""
    asked = []

    def decode_clip(path, indices_for, put, reader, rotation=0):
        indices = np.asarray(indices_for(102))
        asked.append(indices.reshape(-1, 4).tolist())
        indices = indices.reshape(-1)
        for index in np.unique(indices).tolist():
            put(np.zeros((36, 48, 3), np.uint8), np.flatnonzero(indices == index).tolist())

    monkeypatch.setattr(dataset, "decode_clip", decode_clip)
    record = VideoRecord("a.mp4", 0, "a", 102, 25.0, 48, 36)
    data = VideoClipDataset(
        [record],
        mode,
        num_frames=4,
        frame_interval=2,
        crop_size=32,
        test_scale=36,
        num_clips=3,
        num_crops=1,
        test_sampling=rule,
    )
    views, _, _ = data[0]
    K = 3 if mode == "test" else 1  # validation: one clip of the same rule
    assert asked == [TEST_SAMPLERS[rule](102, 4, 2, K).tolist()]
    assert views.shape == ((K, 3, 4, 32, 32) if mode == "test" else (3, 4, 32, 32))


def test_dataset_rejects_unknown_rule():
    record = VideoRecord("a.mp4", 0, "a", 102, 25.0, 48, 36)
    with pytest.raises(ValueError, match="uniform, released"):
        VideoClipDataset([record], "test", test_sampling="even")


def test_config_key_is_checked(tmp_path):
    assert load_config(None).test.sampling == "uniform"
    assert load_config(None, ["test.sampling=released"]).test.sampling == "released"
    with pytest.raises(ConfigError, match="test.sampling must be one of.*did you mean released"):
        load_config(None, ["test.sampling=relased"])


def test_released_eval_config_is_the_released_single_clip_protocol():
    cfg = load_config(REPO / "configs" / "k400_r50_glore_8x8_released_eval.yaml")
    assert (cfg.test.num_clips, cfg.test.num_crops, cfg.test.sampling) == (1, 1, "released")
    assert (cfg.data.test_scale, cfg.data.crop_size) == (256, 224)
    assert (cfg.data.num_frames, cfg.data.frame_interval) == (8, 8)
    assert cfg.data.normalization == "official"
    assert (cfg.model.arch, cfg.model.depth, cfg.model.glore) == ("resnet", 50, True)
    # the training recipes keep our 10 x 3 protocol
    for name in ("k400_r50_glore_8x8.yaml", "k400_r101_glore_8x8.yaml"):
        k400 = load_config(REPO / "configs" / name)
        assert (k400.test.num_clips, k400.test.num_crops, k400.test.sampling) == (
            10,
            3,
            "uniform",
        )
