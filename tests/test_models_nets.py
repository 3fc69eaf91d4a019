"""The 3D networks: structure and parameter counts against the released definitions, shapes,
the uniform model API, the factory, and speed features (channels_last_3d, bf16, torch.compile)."""

import os

import pytest
import torch

from videoglore.config import ModelConfig
from videoglore.errors import ConfigError
from videoglore.models import MODELS, build_model, model_name
from videoglore.models.flops import flops_table, format_flops_table

TINY = 0.125

# ---------------------------------------------------------------------------------------------
# Parameter counts and key names derived here, independently of our modules, from the released
# definitions: facebookresearch/GloRe network/resnet{50,101}_3d_gcn_x5.py and
# global_reasoning_unit.py, cypw/PyTorch-MFNet network/mfnet_3d.py (3/4/6/3 units, 96 channels).
# 400 classes. The resulting numbers (trainable parameters, BN statistics excluded):
#   r50 27,985,264   r50_glore 33,731,952   r101 51,695,984   r101_glore 57,442,672
#   mfnet 7,996,368 (MF-Net paper, Table 1: 8.0M)   mfnet_glore 8,807,376 (our GloRe positions)
# ---------------------------------------------------------------------------------------------
OFFICIAL_PARAMS = {
    "r50": 27_985_264,
    "r50_glore": 33_731_952,
    "r101": 51_695_984,
    "r101_glore": 57_442_672,
    "mfnet": 7_996_368,
    "mfnet_glore": 8_807_376,
}


def _bn_relu_conv(cin, cout, kernel_volume, groups=1):
    return 2 * cin + cout * (cin // groups) * kernel_volume  # BN weight+bias, conv without bias


def _glore_unit(c, mid):
    s, n = 2 * mid, mid  # num_s, num_n
    return (c * s + s) + (c * n + n) + (n * n + n) + s * s + s * c + 2 * c


def _resnet_temporal(stage, i):  # released: conv2 all blocks, conv3/4 odd blocks, conv5 block 2
    return {2: True, 3: i % 2 == 1, 4: i % 2 == 1, 5: i == 2}[stage]


def _resnet_glore_positions(depth):
    return {3: (1, 3), 4: (1, 3, 5) if depth == 50 else (6, 12, 18), 2: (), 5: ()}


def official_resnet_params(depth, glore, classes=400):
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    total = 32 * 3 * 3 * 5 * 5 + 2 * 32  # conv1.conv + conv1.bn
    cin = 32
    for stage, n, mid, out in zip(
        (2, 3, 4, 5), blocks, (64, 128, 256, 512), (256, 512, 1024, 2048), strict=True
    ):
        for i in range(1, n + 1):
            kt = 3 if _resnet_temporal(stage, i) else 1
            c = cin if i == 1 else out
            total += _bn_relu_conv(c, mid, kt) + _bn_relu_conv(mid, mid, 9)
            total += _bn_relu_conv(mid, out, 1) + (_bn_relu_conv(c, out, 1) if i == 1 else 0)
            if glore and i in _resnet_glore_positions(depth)[stage]:
                total += _glore_unit(out, mid)
        cin = out
    return total + 2 * 2048 + 2048 * classes + classes


def official_mfnet_params(glore, classes=400):
    total = 16 * 3 * 3 * 5 * 5 + 2 * 16
    cin = 16
    for stage, n, ch in zip((2, 3, 4, 5), (3, 4, 6, 3), (96, 192, 384, 768), strict=True):
        for i in range(1, n + 1):
            c = cin if i == 1 else ch
            total += _bn_relu_conv(c, ch // 4, 1) + _bn_relu_conv(ch // 4, c, 1)
            total += _bn_relu_conv(c, ch, 27, groups=16)
            total += _bn_relu_conv(ch, ch, 1) if i == 1 else _bn_relu_conv(ch, ch, 9, groups=16)
            total += _bn_relu_conv(c, ch, 1) if i == 1 else 0
            if glore and i in {3: (1, 3), 4: (1, 3, 5)}.get(stage, ()):
                total += _glore_unit(ch, ch // 4)
        cin = ch
    return total + 2 * 768 + 768 * classes + classes


def test_official_formulas_give_the_stated_numbers():
    assert official_resnet_params(50, False) == OFFICIAL_PARAMS["r50"]
    assert official_resnet_params(50, True) == OFFICIAL_PARAMS["r50_glore"]
    assert official_resnet_params(101, False) == OFFICIAL_PARAMS["r101"]
    assert official_resnet_params(101, True) == OFFICIAL_PARAMS["r101_glore"]
    assert official_mfnet_params(False) == OFFICIAL_PARAMS["mfnet"]
    assert official_mfnet_params(True) == OFFICIAL_PARAMS["mfnet_glore"]


@pytest.mark.parametrize("name", list(MODELS))
def test_full_size_parameter_count(name):
    model = MODELS[name]()  # built, never run
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]


def _bn_keys(prefix):
    return {f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked"
    }


def _bac_keys(prefix):
    return _bn_keys(f"{prefix}.bn") | {f"{prefix}.conv.weight"}


def _glore_keys(prefix):
    convs = ("conv_state.weight", "conv_state.bias", "conv_proj.weight", "conv_proj.bias")
    gcn = ("gcn.conv1.weight", "gcn.conv1.bias", "gcn.conv2.weight", "conv_extend.weight")
    return {f"{prefix}.{k}" for k in convs + gcn} | _bn_keys(f"{prefix}.blocker")


@pytest.mark.parametrize("depth", [50, 101])
def test_resnet_keys_equal_released_checkpoint_keys(depth):
    expected = {"conv1.conv.weight", "classifier.weight", "classifier.bias"}
    expected |= _bn_keys("conv1.bn") | _bn_keys("tail.bn")
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    for stage, n in zip((2, 3, 4, 5), blocks, strict=True):
        for i in range(1, n + 1):
            p = f"conv{stage}.B{i:02d}"
            expected |= _bac_keys(f"{p}.conv_m1") | _bac_keys(f"{p}.conv_m2")
            expected |= _bac_keys(f"{p}.conv_m3") | (_bac_keys(f"{p}.conv_w1") if i == 1 else set())
            if i in _resnet_glore_positions(depth)[stage]:
                expected |= _glore_keys(f"{p}_extra")
    model = MODELS[f"r{depth}_glore"](width=TINY)
    assert set(model.state_dict()) == expected


def test_mfnet_keys_equal_released_checkpoint_keys():
    expected = {"conv1.conv.weight", "classifier.weight", "classifier.bias"}
    expected |= _bn_keys("conv1.bn") | _bn_keys("tail.bn")
    for stage, n in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True):
        for i in range(1, n + 1):
            p = f"conv{stage}.B{i:02d}"
            for layer in ("conv_i1", "conv_i2", "conv_m1", "conv_m2") + (
                ("conv_w1",) if i == 1 else ()
            ):
                expected |= _bac_keys(f"{p}.{layer}")
    assert set(MODELS["mfnet"](width=TINY).state_dict()) == expected


def test_resnet_layer_details_match_released():
    model = MODELS["r50"](width=TINY)
    kt = {
        s: [b.conv_m1.conv.kernel_size[0] for b in getattr(model, s)]
        for s in ("conv2", "conv3", "conv4", "conv5")
    }
    assert kt == {
        "conv2": [3, 3, 3],
        "conv3": [3, 1, 3, 1],
        "conv4": [3, 1, 3, 1, 3, 1],
        "conv5": [1, 3, 1],
    }
    assert model.conv1.conv.kernel_size == (3, 5, 5) and model.conv1.conv.stride == (1, 2, 2)
    assert model.conv3.B01.conv_m2.conv.stride == (2, 2, 2)
    assert model.conv3.B01.conv_w1.conv.stride == (2, 2, 2)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-4 for m in bns)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    mf = MODELS["mfnet"](width=TINY)
    assert mf.conv2.B01.conv_m1.conv.stride == (2, 1, 1) and mf.conv2.B01.conv_m1.conv.groups == 16
    assert mf.conv2.B02.conv_m2.conv.kernel_size == (1, 3, 3)


def _down(n, times):
    for _ in range(times):
        n = (n - 1) // 2 + 1  # every stride-2 layer here has kernel 3 (pad 1) or 5 (pad 2)
    return n


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_at_standard_and_other_clips(name):
    model = build_model(name, num_classes=7, width=TINY).eval()
    assert model.num_classes == 7
    standard = (1, 3, *model.default_clip)
    other = (2, 3, 6, 72, 100)
    with torch.no_grad():
        for shape in (standard, other):
            x = torch.randn(shape)
            feats = model.forward_features(x)
            n, _, t, h, w = shape
            assert feats.shape == (n, model.num_features, _down(t, 1), _down(h, 5), _down(w, 5))
            logits = model(x)
            assert logits.shape == (n, 7)
            torch.testing.assert_close(model.forward_head(feats), logits)
            assert model.forward_head(feats, pre_logits=True).shape == (n, model.num_features)
    expected_clip = (16, 224, 224) if name.startswith("mfnet") else (8, 224, 224)
    assert model.default_clip == expected_clip


def test_width_keeps_fibre_groups_divisible():
    for width in (0.1, 0.3):
        model = MODELS["mfnet_glore"](width=width)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv3d):
                assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0
        model.eval()(torch.randn(1, 3, 2, 32, 32))


def test_build_model_from_config_and_errors():
    cfg = ModelConfig(arch="resnet", depth=101, glore=True, num_classes=3, width=TINY, dropout=0.2)
    assert model_name(cfg) == "r101_glore"
    model = build_model(cfg)
    assert model.num_classes == 3 and model.dropout.p == 0.2 and hasattr(model.conv4, "B18_extra")
    assert model_name(ModelConfig(arch="mfnet", glore=False)) == "mfnet"
    assert build_model(cfg, num_classes=5).classifier.out_features == 5
    with pytest.raises(ConfigError, match="unknown model 'r18'.*r50_glore"):
        build_model("r18")
    with pytest.raises(ConfigError, match="model.depth"):
        build_model(ModelConfig(depth=34))
    with pytest.raises(ConfigError, match="model.arch"):
        build_model(ModelConfig(arch="vit"))


def test_bf16_autocast_and_channels_last():
    model = build_model("mfnet_glore", num_classes=4, width=TINY).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        cl = model(x.to(memory_format=torch.channels_last_3d))
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    torch.testing.assert_close(cl, expected, rtol=1e-3, atol=1e-3)


def test_compiles_as_one_graph():
    """Dynamo captures the whole net (GloRe reshapes included) with no graph break. The inductor
    backend is exercised by test_inductor_compile, which is too slow for 2 shared CPU cores."""
    model = build_model("r50_glore", num_classes=4, width=TINY).eval()
    x = torch.randn(1, 3, 4, 48, 48)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.skipif(
    not os.environ.get("VIDEOGLORE_SLOW_TESTS"),
    reason="inductor compilation takes minutes on a 2-core CPU; set VIDEOGLORE_SLOW_TESTS=1",
)
def test_inductor_compile():
    model = build_model("r50_glore", num_classes=4, width=TINY).eval()
    x = torch.randn(1, 3, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-3, atol=1e-3)


def test_flops_table_tiny():
    rows = flops_table(["r50", "r50_glore"], width=TINY)
    assert [r["model"] for r in rows] == ["r50", "r50_glore"]
    plain, glore = rows
    assert plain["clip"] == "8x224x224" and plain["glore_overhead_pct"] is None
    assert glore["params_M"] > plain["params_M"] > 0
    assert glore["glore_overhead_pct"] == pytest.approx(
        100 * (glore["gflops"] / plain["gflops"] - 1)
    )

    # GloRe multiply-adds at width 1/8: conv3 C=64, S=32, K=16, L=4·28·28; conv4 C=128, S=64,
    # K=32, L=4·14·14 — four 1×1 convs / products of C·S·L, C·K·L, 2·S·K·L, S·C·L, plus the tiny
    # GCN (K·K·S + S·S·K); fvcore adds the blocker BN (a few %).
    def unit(c, s, k, length):
        return (
            c * s * length
            + c * k * length
            + 2 * s * k * length
            + s * c * length
            + k * k * s
            + s * s * k
        )

    expected = 2 * unit(64, 32, 16, 4 * 28 * 28) + 3 * unit(128, 64, 32, 4 * 14 * 14)
    extra = (glore["gflops"] - plain["gflops"]) * 1e9
    assert expected <= extra <= 1.05 * expected
    table = format_flops_table(rows)
    assert table.splitlines()[0].startswith("| model | clip")
    assert "| r50_glore | 8x224x224 |" in table and "+" in table.splitlines()[-1]
    with pytest.raises(KeyError, match="r18"):
        flops_table(["r18"])


@pytest.mark.parametrize("arch", ["resnet", "mfnet"])
def test_glore_nodes_scales_every_unit(arch):
    """model.glore_nodes multiplies each unit's K nodes (and 2K states); 1 is the released net."""
    cfg = ModelConfig(arch=arch, glore=True, num_classes=5, width=0.5)
    released = build_model(cfg)
    doubled = build_model(
        ModelConfig(arch=arch, glore=True, num_classes=5, width=0.5, glore_nodes=2.0)
    )
    units = [m for m in released.modules() if type(m).__name__ == "GloRe"]
    bigger = [m for m in doubled.modules() if type(m).__name__ == "GloRe"]
    assert len(units) == len(bigger) == 5
    for unit, big in zip(units, bigger, strict=True):
        assert (big.num_n, big.num_s) == (2 * unit.num_n, 2 * unit.num_s)
        assert big.conv_extend.out_channels == unit.conv_extend.out_channels
