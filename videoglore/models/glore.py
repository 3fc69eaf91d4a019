"""The Global Reasoning (GloRe) unit, one implementation for 1D, 2D and 3D feature maps.

Paper: Chen et al., "Graph-Based Global Reasoning Networks", CVPR 2019 (arXiv 1811.12814), §3 and
Fig. 3. Released code: facebookresearch/GloRe ``network/global_reasoning_unit.py``.

Data flow for an input X of shape (N, C, *positions), L = product of the position sizes::

    X ──► conv_state (1×1, C→S, bias) ──► Φ (N, S, L) ───────────┐
    X ──► conv_proj  (1×1, C→K, bias) ──► B (N, K, L) ──┐        │
                                                        ▼        ▼
                              V = Φ · Bᵀ  (N, S, K)   [× 1/L if normalize]
                              GCN: Z = conv2(ReLU(V + conv1_over_nodes(V)))
                              Y = Z · B   (N, S, L)   (reverse projection, same B)
    out = X + blocker(conv_extend(Y))      conv_extend: 1×1, S→C, no bias; blocker: BN, eps 1e-4

with S = 2·mid ("num_s") states and K = mid ("num_n") nodes. The projection runs over all
positions jointly (T·H·W for video), so nodes gather evidence from the whole clip. The blocker
BN's weight starts at zero (released code zeroes every ``*blocker.weight``), so a freshly built
unit is exactly the identity and can be dropped into a pretrained network.

Module names (``conv_state``, ``conv_proj``, ``gcn.conv1``, ``gcn.conv2``, ``conv_extend``,
``blocker``) are the released ones, so released state dicts load key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from videoglore.models.layers import xavier_init

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class GraphConv(nn.Module):
    """One-layer graph convolution on K nodes with S states each (released class ``GCN``).

    ``conv1`` mixes nodes (the adjacency A_g, learned, with bias) and is added to its input — the
    identity term of (I − A_g) in Eq. 3 — then ReLU, then ``conv2`` mixes states (W_g, no bias).
    """

    def __init__(self, num_state: int, num_node: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_node, num_node, kernel_size=1)  # node-wise, bias=True
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(num_state, num_state, kernel_size=1, bias=False)  # state-wise

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # v: (N, S, K)
        h = self.conv1(v.transpose(1, 2)).transpose(1, 2)  # (N, S, K): mixes the K nodes
        h = h + v
        return self.conv2(self.relu(h))  # (N, S, K)


class GloRe(nn.Module):
    """Graph-based Global Reasoning unit for ``dim``-dimensional positions (1, 2 or 3).

    Args:
        channels: C, channels of the input and output.
        mid_channels: ``num_mid`` of the released code: K = mid nodes, S = 2·mid states. The
            released video nets use the stage's bottleneck width (C/4).
        dim: 1 (N, C, L), 2 (N, C, H, W) or 3 (N, C, T, H, W).
        normalize: divide the projected node states by L, so their scale does not grow with the
            clip size. The released video nets use ``False`` (fixed 8×224² training clips).
    """

    def __init__(
        self, channels: int, mid_channels: int, dim: int = 3, normalize: bool = False
    ) -> None:
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"GloRe dim must be 1, 2 or 3, got {dim}")
        conv, norm = _CONV[dim], _NORM[dim]
        self.dim = dim
        self.normalize = normalize
        self.num_s = 2 * mid_channels
        self.num_n = mid_channels
        self.conv_state = conv(channels, self.num_s, kernel_size=1)
        self.conv_proj = conv(channels, self.num_n, kernel_size=1)
        self.gcn = GraphConv(num_state=self.num_s, num_node=self.num_n)
        self.conv_extend = conv(self.num_s, channels, kernel_size=1, bias=False)
        self.blocker = norm(channels, eps=1e-4)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Released initialisation: Xavier-uniform convs, zero biases, blocker BN weight 0."""
        xavier_init(self)
        self.zero_blocker()

    def zero_blocker(self) -> None:
        """Zero the blocker BN weight: the unit's output is then exactly its input."""
        nn.init.zeros_(self.blocker.weight)
        nn.init.zeros_(self.blocker.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C, *P), L = prod(P)
        n, positions = x.shape[0], x.shape[2:]
        state = self.conv_state(x).reshape(n, self.num_s, -1)  # (N, S, L)
        proj = self.conv_proj(x).reshape(n, self.num_n, -1)  # (N, K, L)
        nodes = torch.matmul(state, proj.transpose(1, 2))  # (N, S, K)
        if self.normalize:
            nodes = nodes * (1.0 / state.shape[2])
        nodes = self.gcn(nodes)  # (N, S, K)
        y = torch.matmul(nodes, proj)  # (N, S, L): reverse projection with the same B
        y = y.reshape(n, self.num_s, *positions)  # (N, S, *P)
        return x + self.blocker(self.conv_extend(y))  # (N, C, *P)

    def extra_repr(self) -> str:
        dims = f"dim={self.dim}, states={self.num_s}, nodes={self.num_n}"
        return f"{dims}, normalize={self.normalize}"


def GloRe1d(channels: int, mid_channels: int, normalize: bool = False) -> GloRe:  # noqa: N802
    """GloRe unit for (N, C, L) sequences."""
    return GloRe(channels, mid_channels, dim=1, normalize=normalize)


def GloRe2d(channels: int, mid_channels: int, normalize: bool = False) -> GloRe:  # noqa: N802
    """GloRe unit for (N, C, H, W) images."""
    return GloRe(channels, mid_channels, dim=2, normalize=normalize)


def GloRe3d(channels: int, mid_channels: int, normalize: bool = False) -> GloRe:  # noqa: N802
    """GloRe unit for (N, C, T, H, W) clips."""
    return GloRe(channels, mid_channels, dim=3, normalize=normalize)
