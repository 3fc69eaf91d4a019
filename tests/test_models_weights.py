"""Inflating 2D ImageNet weights and loading released / own 3D checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import randomized
from videoglore.errors import CheckpointError
from videoglore.models import build_model, inflate_2d_weights, load_weights

TINY = 0.125


def _random_2d_state_dict(model3d, seed=0):
    """A 2D state dict in the released "lite" key layout (resnet50-lite.pth): the 3D net's keys
    without GloRe units, 4-D kernels, a 1000-class classifier, and one key the 3D net lacks."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, value in model3d.state_dict().items():
        if "_extra" in key or key.startswith("classifier"):
            continue
        if value.dim() == 5:
            o, i, _, kh, kw = value.shape
            sd[key] = (
                torch.randn(o, i, kh, kw, generator=gen, dtype=torch.float64) / (i * kh * kw) ** 0.5
            )
        elif key.endswith("running_var"):
            sd[key] = torch.rand(value.shape, generator=gen, dtype=torch.float64) + 0.5
        elif key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(100)
        else:
            sd[key] = torch.randn(value.shape, generator=gen, dtype=torch.float64) * 0.2
            if key.endswith("bn.weight"):
                sd[key] += 1.0
    sd["classifier.weight"] = torch.randn(1000, model3d.num_features, dtype=torch.float64)
    sd["classifier.bias"] = torch.zeros(1000, dtype=torch.float64)
    sd["fc_aux.weight"] = torch.zeros(3, 3, dtype=torch.float64)
    return sd


def reference_2d_features(sd, x, eps=1e-4):
    """The released 2D pre-activation ResNet "lite", written functionally over its state dict."""

    def bn(h, p):
        return F.batch_norm(
            h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
            training=False, eps=eps,
        )  # fmt: skip

    def bn_relu_conv(h, p, stride=1):
        kernel = sd[f"{p}.conv.weight"]
        return F.conv2d(
            F.relu(bn(h, f"{p}.bn")), kernel, stride=stride, padding=kernel.shape[-1] // 2
        )

    h = F.conv2d(x, sd["conv1.conv.weight"], stride=2, padding=2)
    h = F.max_pool2d(F.relu(bn(h, "conv1.bn")), 3, stride=2, padding=1)
    for stage, stride in (("conv2", 1), ("conv3", 2), ("conv4", 2), ("conv5", 2)):
        i = 1
        while f"{stage}.B{i:02d}.conv_m1.conv.weight" in sd:
            p, s = f"{stage}.B{i:02d}", stride if i == 1 else 1
            r = bn_relu_conv(
                bn_relu_conv(bn_relu_conv(h, f"{p}.conv_m1"), f"{p}.conv_m2", s), f"{p}.conv_m3"
            )
            h = r + (bn_relu_conv(h, f"{p}.conv_w1", s) if f"{p}.conv_w1.conv.weight" in sd else h)
            i += 1
    return F.relu(bn(h, "tail.bn"))


def test_inflation_round_trip_matches_2d_net_on_identical_frames():
    model = build_model("r50_glore", num_classes=5, width=TINY).double().eval()
    sd2d = _random_2d_state_dict(model)
    report = inflate_2d_weights(model, sd2d)

    # kernels with temporal extent 3 are inflated: stem, conv2 ×3, conv3 ×2, conv4 ×3, conv5 ×1
    assert len(report.inflated) == 10 and "conv1.conv.weight" in report.inflated
    assert report.unexpected == ["fc_aux.weight"]
    assert [m.split(":")[0] for m in report.mismatched] == ["classifier.weight", "classifier.bias"]
    assert {k.split(".")[1] for k in report.missing if k.startswith("conv")} == {
        "B01_extra", "B03_extra", "B05_extra"
    }  # fmt: skip
    kernel3d = model.state_dict()["conv2.B01.conv_m1.conv.weight"]
    assert kernel3d.shape[2] == 3
    torch.testing.assert_close(kernel3d.sum(dim=2), sd2d["conv2.B01.conv_m1.conv.weight"])

    # A clip of T identical frames. Zero temporal padding changes the first/last 8 output steps
    # (the temporal kernels widen the border by 8 steps at T/2), so compare the middle ones.
    frame = torch.randn(1, 3, 48, 48, dtype=torch.float64)
    clip = frame[:, :, None].expand(1, 3, 40, 48, 48).contiguous()
    with torch.no_grad():
        feats3d = model.forward_features(clip)  # (1, C, 20, 2, 2)
        feats2d = reference_2d_features(sd2d, frame)  # (1, C, 2, 2)
    assert feats3d.shape[2] == 20 and feats3d.shape[3:] == feats2d.shape[2:]
    for t in (8, 9, 10, 11):
        torch.testing.assert_close(feats3d[:, :, t], feats2d, rtol=1e-7, atol=1e-9)
    assert not torch.allclose(feats3d[:, :, 0], feats2d)  # the border really differs


def test_inflation_rejects_a_different_architecture():
    sd2d = _random_2d_state_dict(build_model("r50", width=TINY))
    with pytest.raises(CheckpointError, match="cannot inflate conv1.conv.weight"):
        inflate_2d_weights(build_model("r50", width=0.25), sd2d)


def _assert_same_state(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_loads_released_checkpoint_format(tmp_path):
    source = randomized(build_model("r50_glore", num_classes=6, width=TINY))
    path = tmp_path / "resnet50-lite_3d_8x8_w-glore_2-3_ep-0000.pth"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save(
        {"epoch": 0, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path
    )

    target = build_model("r50_glore", num_classes=6, width=TINY)
    report = load_weights(target, path)
    assert report.format == "official" and not report.missing and not report.unexpected
    assert len(report.loaded) == len(source.state_dict())
    _assert_same_state(source, target)


def test_loads_own_checkpoint_and_bare_state_dict(tmp_path):
    source = randomized(build_model("mfnet_glore", num_classes=3, width=TINY))
    ours = tmp_path / "best.pt"
    torch.save(
        {"model": source.state_dict(), "epoch": 2, "config": {"model": {"arch": "mfnet"}}}, ours
    )
    bare = tmp_path / "bare.pt"
    compiled_keys = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}
    torch.save(compiled_keys, bare)
    for path, fmt in ((ours, "videoglore"), (bare, "state_dict")):
        target = build_model("mfnet_glore", num_classes=3, width=TINY)
        assert load_weights(target, path).format == fmt
        _assert_same_state(source, target)


def test_wrong_checkpoint_errors_list_the_keys(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(
        {
            "state_dict": {
                f"module.{k}": v for k, v in build_model("r50", width=TINY).state_dict().items()
            }
        },
        plain,
    )
    with pytest.raises(
        CheckpointError, match=r"missing: conv3\.B01_extra\.blocker\.bias.*model\.weights_skip"
    ):
        load_weights(build_model("r50_glore", width=TINY), plain)

    with_glore = build_model("r50_glore", width=TINY).state_dict()
    with pytest.raises(CheckpointError, match=r"unexpected: conv3\.B01_extra"):
        load_weights(build_model("r50", width=TINY), with_glore)
    with pytest.raises(
        CheckpointError,
        match=r"wrong shape: classifier\.weight: file \(400, 256\) vs model \(7, 256\)",
    ):
        load_weights(build_model("r50_glore", num_classes=7, width=TINY), with_glore)

    target = build_model("r50_glore", width=TINY)
    report = load_weights(target, plain, strict=False)
    assert report.missing and all("_extra" in k for k in report.missing) and not report.unexpected
    assert "conv2.B01.conv_m1.conv.weight" in report.loaded


def test_unreadable_files_raise_checkpoint_error(tmp_path):
    model = build_model("mfnet", width=TINY)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(model, tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth: cannot read"):
        load_weights(model, garbage)
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "notes": "x"}, odd)
    with pytest.raises(CheckpointError, match="no weights found.*epoch"):
        load_weights(model, odd)


def test_inflating_a_deeper_2d_net_says_what_was_left_out(caplog):
    """An R101 ImageNet file inflated into an R50 fits every R50 tensor by name and shape; the
    blocks R50 lacks used to be dropped without a word."""
    sd2d = _random_2d_state_dict(build_model("r101", width=TINY))
    with caplog.at_level("WARNING", logger="videoglore.models.weights"):
        report = inflate_2d_weights(build_model("r50", width=TINY), sd2d)
    assert any(k.startswith("conv4.B07.") for k in report.unexpected)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"{len(report.unexpected)} tensors of the 2D file have no place in the model" in warning
    assert "same architecture and depth" in warning


def test_a_3d_file_given_as_2d_weights_is_refused(tmp_path):
    """model.pretrained inflates 2D ImageNet kernels; a 3D checkpoint there used to load its
    fitting tensors and warn about the rest, training from a mix without a clear word."""
    path = tmp_path / "r101_3d.pt"
    torch.save(build_model("r101", width=TINY).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        inflate_2d_weights(build_model("r50", width=TINY), path)
    assert str(info.value) == (
        f"{path}: holds 3D weights (conv1.conv.weight is 5-D), not a 2D ImageNet net to "
        "inflate; start from it with model.weights instead of model.pretrained"
    )
