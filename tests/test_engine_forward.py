"""The one forward path: normalize → autocast → forward, and the fast path resolved per device."""

import pytest
import torch
from torch import nn

from tests.helpers import REPO
from videoglore.config import Config, DataConfig, RuntimeConfig, load_config
from videoglore.data import normalize
from videoglore.engine.forward import (
    FastPath,
    fast_path,
    forward_batch,
    forward_views,
    place_model,
)
from videoglore.errors import ConfigError

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_the_fast_path_is_on_for_cuda_and_off_on_cpu_by_default():
    tc = RuntimeConfig()
    assert fast_path(tc, CUDA) == FastPath(dtype=torch.bfloat16, channels_last=True, compile=True)
    assert fast_path(tc, CPU) == FastPath(dtype=None, channels_last=False, compile=False)
    # testing and prediction: bf16 + channels_last on CUDA, never compiled
    assert fast_path(tc, CUDA, training=False) == FastPath(torch.bfloat16, True, False)
    assert fast_path(tc, CPU, training=False) == FastPath(None, False, False)


def test_explicit_settings_win_over_auto():
    off = RuntimeConfig(channels_last=False, compile=False, amp="off")
    assert fast_path(off, CUDA) == FastPath(None, False, False)
    on = RuntimeConfig(channels_last=True, compile=True, amp="bf16")
    assert fast_path(on, CPU) == FastPath(torch.bfloat16, True, True)
    assert fast_path(on, CPU, training=False) == FastPath(torch.bfloat16, True, False)


def test_config_takes_auto_true_or_false():
    cfg = load_config(None, ["runtime.channels_last=true", "runtime.compile=auto"])
    assert cfg.runtime.channels_last is True and cfg.runtime.compile == "auto"
    with pytest.raises(ConfigError, match="runtime.compile must be one of auto, True, False.*auto"):
        load_config(None, ["runtime.compile=aut"])


def test_the_k400_configs_take_the_fast_path():
    for name in ("k400_r50_glore_8x8", "k400_r101_glore_8x8", "k400_mfnet_glore_16x8"):
        tc = load_config(REPO / f"configs/{name}.yaml").runtime
        assert fast_path(tc, CUDA) == FastPath(torch.bfloat16, True, True), name


class _Spy(nn.Module):
    def forward(self, x):
        self.seen = (x.dtype, x.is_contiguous(memory_format=torch.channels_last_3d))
        return nn.functional.linear(x.flatten(1), torch.ones(2, x[0].numel()))  # (B, 2)


def test_forward_batch_normalizes_then_runs_under_autocast_in_the_memory_format():
    batch = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    spy = _Spy()
    logits = forward_batch(spy, batch, DataConfig(), CPU, FastPath(torch.bfloat16, True, False))
    assert spy.seen == (torch.float32, True) and logits.dtype == torch.bfloat16
    logits = forward_batch(spy, batch, DataConfig(), CPU, FastPath(None, False, False))
    assert spy.seen == (torch.float32, False) and logits.dtype == torch.float32
    expected = normalize(batch, "official").flatten(1).sum(1, keepdim=True).expand(2, 2)
    torch.testing.assert_close(logits, expected)


class _Chunks(nn.Module):
    """Logits that depend on each view alone; records the batch sizes it is given."""

    def __init__(self):
        super().__init__()
        self.sizes = []
        self.fc = nn.Linear(3, 4)

    def forward(self, x):  # (B, 3, T, S, S)
        self.sizes.append(len(x))
        return self.fc(x.mean(dim=(2, 3, 4)))  # (B, 4)


def test_views_run_in_chunks_of_max_views_per_forward():
    torch.manual_seed(0)
    views = torch.randint(0, 256, (7, 3, 2, 8, 8), dtype=torch.uint8)
    cfg = Config()
    cfg.test.max_views_per_forward = 3
    model = _Chunks()
    logits = forward_views(model, views, cfg, CPU, FastPath(None, False, False))
    assert model.sizes == [3, 3, 1] and logits.shape == (7, 4) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, model(normalize(views, cfg.data.normalization)))


def test_place_model_moves_it_into_the_fast_paths_memory_format():
    conv = nn.Conv3d(3, 4, 3)
    assert place_model(conv, CPU, FastPath(None, True, False)) is conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain = place_model(nn.Conv3d(3, 4, 3), CPU, FastPath(None, False, False))
    assert not plain.weight.is_contiguous(memory_format=torch.channels_last_3d)
