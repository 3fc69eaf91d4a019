"""The GloRe unit against a slow reference written from the paper (arXiv 1811.12814, §3)."""

import pytest
import torch

from videoglore.models.glore import GloRe, GloRe1d, GloRe2d, GloRe3d

SHAPES = {1: (2, 12, 10), 2: (2, 12, 5, 6), 3: (2, 12, 3, 4, 5)}  # (N, C, *positions)


def _randomize(unit: GloRe, seed: int = 0) -> GloRe:
    """Random values for every parameter and BN statistic, blocker weight included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unit.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
        unit.blocker.running_mean.copy_(torch.randn(unit.blocker.running_mean.shape, generator=gen))
        unit.blocker.running_var.uniform_(0.5, 2.0, generator=gen)
    return unit


def reference_glore(unit: GloRe, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-3 of the paper spelled out with einsum and explicit loops (BN in eval mode)."""
    n, c = x.shape[:2]
    xs = x.reshape(n, c, -1)  # (N, C, L)
    length = xs.shape[2]
    s, k = unit.num_s, unit.num_n
    w_state = unit.conv_state.weight.reshape(s, c)
    w_proj = unit.conv_proj.weight.reshape(k, c)
    phi = torch.einsum("sc,ncl->nsl", w_state, xs) + unit.conv_state.bias[None, :, None]
    b = torch.einsum("kc,ncl->nkl", w_proj, xs) + unit.conv_proj.bias[None, :, None]
    v = torch.zeros(n, s, k, dtype=x.dtype)
    for i in range(s):  # V[:, i, j] = Σ_l φ_i(l) · B_j(l)
        for j in range(k):
            v[:, i, j] = (phi[:, i, :] * b[:, j, :]).sum(dim=1)
    if unit.normalize:
        v = v / length
    a_g = unit.gcn.conv1.weight.reshape(k, k)  # node adjacency (with bias), plus the identity
    h = torch.einsum("kj,nsj->nsk", a_g, v) + unit.gcn.conv1.bias[None, None, :] + v
    w_g = unit.gcn.conv2.weight.reshape(s, s)  # state update
    z = torch.einsum("ts,nsk->ntk", w_g, torch.relu(h))
    y = torch.einsum("nsk,nkl->nsl", z, b)  # reverse projection with the same B
    e = torch.einsum("cs,nsl->ncl", unit.conv_extend.weight.reshape(c, s), y)
    bn = unit.blocker
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = (e - bn.running_mean[None, :, None]) * scale[None, :, None] + bn.bias[None, :, None]
    return x + out.reshape(x.shape)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fresh_unit_is_exactly_identity(dim):
    unit = GloRe(12, 4, dim=dim)
    x = torch.randn(SHAPES[dim])
    assert torch.equal(unit.train()(x), x)
    assert torch.equal(unit.eval()(x), x)
    assert torch.count_nonzero(unit.blocker.weight) == 0


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_matches_slow_reference(dim, normalize):
    unit = _randomize(GloRe(12, 4, dim=dim, normalize=normalize).double(), seed=dim).eval()
    x = torch.randn(SHAPES[dim], dtype=torch.float64)
    with torch.no_grad():
        out, ref = unit(x), reference_glore(unit, x)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)  # the unit really does something here
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


def test_normalize_divides_node_states_by_positions():
    x = torch.randn(SHAPES[3])
    plain = _randomize(GloRe(12, 4, dim=3, normalize=False)).eval()
    normed = _randomize(GloRe(12, 4, dim=3, normalize=True)).eval()
    assert not torch.allclose(plain(x), normed(x))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_gradients_reach_every_parameter(dim):
    unit = _randomize(GloRe(12, 4, dim=dim), seed=7).train()
    x = torch.randn(SHAPES[dim], requires_grad=True)
    (unit(x) * torch.randn(SHAPES[dim])).sum().backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    assert torch.count_nonzero(x.grad) > 0


def test_layers_names_and_init_match_released_unit():
    """global_reasoning_unit.py: num_s = 2·mid, num_n = mid; state/proj convs and the node-wise
    GCN conv have biases, the state-wise GCN conv and conv_extend do not; blocker eps 1e-4."""
    unit = GloRe(64, 16, dim=3)
    shapes = {k: tuple(v.shape) for k, v in unit.state_dict().items()}
    assert shapes == {
        "conv_state.weight": (32, 64, 1, 1, 1),
        "conv_state.bias": (32,),
        "conv_proj.weight": (16, 64, 1, 1, 1),
        "conv_proj.bias": (16,),
        "gcn.conv1.weight": (16, 16, 1),
        "gcn.conv1.bias": (16,),
        "gcn.conv2.weight": (32, 32, 1),
        "conv_extend.weight": (64, 32, 1, 1, 1),
        "blocker.weight": (64,),
        "blocker.bias": (64,),
        "blocker.running_mean": (64,),
        "blocker.running_var": (64,),
        "blocker.num_batches_tracked": (),
    }
    assert unit.blocker.eps == 1e-4
    assert torch.count_nonzero(unit.conv_state.bias) == 0
    assert torch.count_nonzero(unit.gcn.conv1.bias) == 0
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) for conv_state: 64 in, 32 out
    assert unit.conv_state.weight.abs().max() <= (6 / (64 + 32)) ** 0.5


def test_aliases_pick_the_dimension():
    assert isinstance(GloRe1d(8, 2).conv_state, torch.nn.Conv1d)
    assert isinstance(GloRe2d(8, 2).blocker, torch.nn.BatchNorm2d)
    assert isinstance(GloRe3d(8, 2).conv_extend, torch.nn.Conv3d)
    with pytest.raises(ValueError, match="dim"):
        GloRe(8, 2, dim=4)


def test_channels_last_and_bf16_autocast():
    unit = _randomize(GloRe(16, 4, dim=3)).eval()
    x = torch.randn(2, 16, 3, 6, 6)
    with torch.no_grad():
        expected = unit(x)
        cl = unit.to(memory_format=torch.channels_last_3d)(
            x.to(memory_format=torch.channels_last_3d)
        )
        torch.testing.assert_close(cl, expected, rtol=1e-3, atol=1e-3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = unit(x)
    assert low.shape == x.shape and torch.isfinite(low).all()
    assert (low.float() - expected).abs().max() < 0.1 * expected.abs().max()
