"""The one network skeleton (VideoNet) and the registry: every family is a table plus a block."""

import pytest
import torch
from torch import nn

from videoglore.models import (
    MODELS,
    Architecture,
    GloRe,
    StageSpec,
    VideoNet,
    build_model,
    build_video_net,
    default_clip,
)
from videoglore.models.layers import BnReluConv3d

TINY = 0.125


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_is_a_videonet_with_its_released_clip(name):
    model = MODELS[name](width=TINY)
    assert isinstance(model, VideoNet)
    assert default_clip(name) == model.default_clip
    assert model.default_clip == ((16, 224, 224) if name.startswith("mfnet") else (8, 224, 224))
    # the released dropout of each family when none is given: R50/R101 0.5, MF-Net none
    assert model.dropout.p == (0.0 if name.startswith("mfnet") else 0.5)


@pytest.mark.parametrize("base", ["r50", "mfnet"])
def test_fresh_glore_units_are_the_identity_inside_the_net(base):
    """Every GloRe unit of a fresh net has a zero blocker, so the GloRe net with the plain net's
    weights gives the plain net's logits: units can be dropped into a pretrained net."""
    plain = build_model(base, num_classes=4, width=TINY).eval()
    with_glore = build_model(f"{base}_glore", num_classes=4, width=TINY).eval()
    units = [m for m in with_glore.modules() if isinstance(m, GloRe)]
    assert len(units) == 5 and all(torch.count_nonzero(u.blocker.weight) == 0 for u in units)
    missing = with_glore.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all("_extra." in key for key in missing)
    x = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(with_glore(x), plain(x), rtol=0, atol=0)


def test_same_seed_gives_the_same_initial_weights():
    """Values recorded before the skeleton refactor: the module creation order (and so every
    seeded run, the demo's included) is unchanged."""
    expected = {  # conv1.conv.weight[:3], conv3.B01_extra.conv_state.weight[:2], classifier[0, 0]
        "r50_glore": [0.0848976, -0.0397888, 0.0465995, 0.2220055, -0.1319605, 0.0900103],
        "mfnet_glore": [-0.0540017, -0.0145943, -0.0521176, -0.2880718, -0.1685721, 0.1813727],
    }
    for name, values in expected.items():
        torch.manual_seed(0)
        sd = MODELS[name](num_classes=5, width=TINY).state_dict()
        got = [
            *sd["conv1.conv.weight"].flatten()[:3].tolist(),
            *sd["conv3.B01_extra.conv_state.weight"].flatten()[:2].tolist(),
            *sd["classifier.weight"][0, :1].tolist(),
        ]
        assert got == pytest.approx(values, abs=1e-6), name


def test_xavier_init_of_every_layer():
    model = MODELS["r50_glore"](num_classes=5, width=TINY)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv3d | nn.Linear):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5, name
            assert m.bias is None or torch.count_nonzero(m.bias) == 0, name
        elif isinstance(m, nn.BatchNorm3d) and not name.endswith("blocker"):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0, name


class _Plain3d(nn.Module):
    """A minimal block: one pre-activation conv (the block signature of the skeleton)."""

    def __init__(self, in_ch, mid, out, stride, temporal, first):
        super().__init__()
        self.conv = BnReluConv3d(in_ch, out, (3 if temporal else 1, 3, 3), stride=stride)

    def forward(self, x):
        return self.conv(x)


def test_a_new_family_is_a_table_and_a_block():
    arch = Architecture(
        block=_Plain3d,
        stem=8,
        stages=(
            StageSpec("conv2", 2, 8, 16, (2, 2, 2), (1,), glore_after=(2,), glore_mid=4),
            StageSpec("conv3", 1, 16, 24, (1, 2, 2), ()),
        ),
        bn_eps=1e-3,
        dropout=0.25,
        default_clip=(4, 64, 64),
    )
    model = build_video_net(arch, glore=True, num_classes=3).eval()
    assert model.stage_names == ["conv2", "conv3"] and model.num_features == 24
    assert list(dict(model.conv2.named_children())) == ["B01", "B02", "B02_extra"]
    assert model.conv2.B01.conv.conv.kernel_size == (3, 3, 3)
    assert model.conv2.B02.conv.conv.kernel_size == (1, 3, 3)
    assert isinstance(model.conv2.B02_extra, GloRe) and model.conv2.B02_extra.num_n == 4
    assert model.tail.bn.eps == 1e-3 and model.dropout.p == 0.25
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)  # stem /4, conv2 stride 2, conv3 stride (1, 2, 2)
        assert feats.shape == (2, 24, 2, 4, 4)
        assert model(x).shape == (2, 3)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 24)
    assert not hasattr(build_video_net(arch, glore=False).conv2, "B02_extra")
