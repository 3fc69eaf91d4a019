"""Clip samplers: bounds, stride, determinism, uniform spacing, looping of short videos."""

import numpy as np
import pytest

from videoglore.data.sampling import clip_span, sample_test_clips, sample_train_clip


def test_train_clip_is_dense_and_in_bounds():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(500):
        idx = sample_train_clip(100, 8, 8, rng)
        assert idx.shape == (8,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < 100
        assert (np.diff(idx) == 8).all()
        starts.add(int(idx[0]))
    # every start 0..100-57 is possible, the extremes included
    assert starts == set(range(100 - clip_span(8, 8) + 1))


def test_train_clip_exact_fit_has_one_start():
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert sample_train_clip(57, 8, 8, rng).tolist() == list(range(0, 57, 8))


def test_train_clip_loops_short_videos():
    rng = np.random.default_rng(2)
    for _ in range(100):
        idx = sample_train_clip(20, 8, 8, rng)
        assert idx.min() >= 0 and idx.max() < 20
        assert ((idx[1:] - idx[:-1]) % 20 == 8).all()  # stride kept across the wrap


def test_train_clip_depends_only_on_generator_state():
    a = sample_train_clip(300, 8, 8, np.random.default_rng([0, 3, 7]))
    b = sample_train_clip(300, 8, 8, np.random.default_rng([0, 3, 7]))
    assert a.tolist() == b.tolist()


def test_test_clips_uniform_and_deterministic():
    idx = sample_test_clips(300, 8, 8, 10)
    assert idx.shape == (10, 8) and idx.dtype == np.int64
    assert idx.tolist() == sample_test_clips(300, 8, 8, 10).tolist()
    assert idx.min() >= 0 and idx.max() < 300
    assert (np.diff(idx, axis=1) == 8).all()
    steps = np.diff(idx[:, 0])
    assert steps.max() - steps.min() <= 1  # evenly spaced up to rounding
    # symmetric around the video's middle: first clip as far from the start as last from the end
    assert abs(idx[0, 0] - (299 - idx[-1, -1])) <= 1


def test_single_test_clip_is_the_centre_clip():
    idx = sample_test_clips(101, 4, 2, 1)
    assert idx.tolist() == [[47, 49, 51, 53]]  # (101 - 7) // 2 = 47


def test_test_clips_loop_short_videos():
    idx = sample_test_clips(10, 8, 8, 3)
    assert idx.shape == (3, 8)
    assert idx.min() >= 0 and idx.max() < 10
    assert ((idx[:, 1:] - idx[:, :-1]) % 10 == 8).all()
    assert len(set(idx[:, 0].tolist())) == 3


@pytest.mark.parametrize("args", [(0, 8, 8), (10, 0, 8), (10, 8, 0)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        sample_train_clip(*args, np.random.default_rng(0))
    with pytest.raises(ValueError):
        sample_test_clips(*args, 2)
