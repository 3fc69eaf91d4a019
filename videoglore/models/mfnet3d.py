"""MF-Net 3D (Multi-Fiber Network) and MF-Net + GloRe.

Paper: Chen et al., "Multi-Fiber Networks for Video Recognition", ECCV 2018, Table 1. Released
code: cypw/PyTorch-MFNet ``network/mfnet_3d.py`` (the 3/4/6/3-unit, 96-channel version), which the
GloRe video code was adapted from. For 16×224×224 clips, 16 fibres (groups) everywhere::

    conv1    Conv(3→16, 3×5×5, stride 1×2×2) → BN → ReLU;  maxpool 1×3×3 stride 1×2×2  16×56×56
    conv2    3 MF units → 96,  first unit temporal stride 2                              8×56×56
    conv3    4 MF units → 192, stride 1×2×2                                              8×28×28
    conv4    6 MF units → 384, stride 1×2×2                                              8×14×14
    conv5    3 MF units → 768, stride 1×2×2                                              8×7×7
    tail     BN → ReLU;  pool → Linear(768 → classes)   (released: no dropout, BN eps 1e-5)

An MF unit: a multiplexer conv_i1 (1×1×1, C→mid/4) → conv_i2 (mid/4→C) added to its input, then
conv_m1 (3×3×3, C→mid, 16 groups, carries the stride) → conv_m2 (1×3×3 grouped, or 1×1×1 dense in
the first unit of a stage), plus a strided 1×1×1 shortcut conv_w1 in the first unit. All layers are
BN → ReLU → Conv. Module names equal the released ones.

``mfnet_glore`` (ours; the GloRe paper reports no MF-Net variant) mirrors the ResNet-50 recipe: two
units in conv3 (after units 1 and 3) and three in conv4 (after units 1, 3 and 5, i.e. every other
unit, like R50's conv4). As in the ResNets, each unit has C/2 states and C/4 nodes (there the
stage's bottleneck width mid = C/4), so conv3 gets 96 states / 48 nodes and conv4 192 / 96. These
are the stages with 28² and 14² maps where global reasoning is cheap relative to the convs and
still sees a large grid; conv5's 7² map adds little.

The stem (the same as the ResNets'), tail and head are ``videonet.VideoNet``'s; this file holds
the block and the table.
"""

from __future__ import annotations

import torch
from torch import nn

from videoglore.models.layers import BnReluConv3d, Triple
from videoglore.models.videonet import Architecture, StageSpec

GROUPS = 16  # fibres
BN_EPS = 1e-5  # the released MF-Net uses PyTorch's default BatchNorm eps


class MFUnit3d(nn.Module):
    """Multi-fibre unit (released ``MF_UNIT``)."""

    def __init__(
        self, in_ch: int, mid: int, out: int, stride: Triple, temporal: bool, first: bool
    ) -> None:
        super().__init__()
        mux = mid // 4
        kt = 3 if temporal else 1
        self.conv_i1 = BnReluConv3d(in_ch, mux, bn_eps=BN_EPS)
        self.conv_i2 = BnReluConv3d(mux, in_ch, bn_eps=BN_EPS)
        self.conv_m1 = BnReluConv3d(
            in_ch, mid, (kt, 3, 3), stride=stride, groups=GROUPS, bn_eps=BN_EPS
        )
        if first:
            self.conv_m2 = BnReluConv3d(mid, out, bn_eps=BN_EPS)
        else:
            self.conv_m2 = BnReluConv3d(mid, out, (1, 3, 3), groups=GROUPS, bn_eps=BN_EPS)
        self.conv_w1 = BnReluConv3d(in_ch, out, stride=stride, bn_eps=BN_EPS) if first else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, T, H, W) → (N, C_out, T/st, H/s, W/s)
        h = x + self.conv_i2(self.conv_i1(x))  # multiplexer: mixes information across fibres
        h = self.conv_m2(self.conv_m1(h))
        shortcut = x if self.conv_w1 is None else self.conv_w1(x)
        return h + shortcut


_EVERY = (1, 2, 3, 4, 5, 6)  # all MF units have a 3×3×3 first conv

# The released MF-Net 3D, with our GloRe positions (see the module docstring).
MFNET = Architecture(
    block=MFUnit3d,
    stem=16,
    stages=(
        StageSpec("conv2", 3, 96, 96, (2, 1, 1), _EVERY[:3]),
        StageSpec("conv3", 4, 192, 192, (1, 2, 2), _EVERY[:4], glore_after=(1, 3), glore_mid=48),
        StageSpec("conv4", 6, 384, 384, (1, 2, 2), _EVERY, glore_after=(1, 3, 5), glore_mid=96),
        StageSpec("conv5", 3, 768, 768, (1, 2, 2), _EVERY[:3]),
    ),
    bn_eps=BN_EPS,
    dropout=0.0,  # released: no dropout for Kinetics training
    default_clip=(16, 224, 224),
    divisor=GROUPS,
)
