"""3D ResNet-50/101 "lite" of the released GloRe video code, with or without GloRe units.

Source of every number here: facebookresearch/GloRe ``network/resnet50_3d_gcn_x5.py`` and
``network/resnet101_3d_gcn_x5.py`` (paper §4.3, "Video recognition"). The network is a
pre-activation ResNet (BN → ReLU → Conv everywhere, BN eps 1e-4) for 8×224×224 clips::

    conv1  Conv(3→32, 3×5×5, stride 1×2×2) → BN → ReLU → MaxPool(1×3×3, stride 1×2×2)   8×56×56
    conv2  3 bottlenecks 64→256                     temporal kernel 3 in every block    8×56×56
    conv3  4 bottlenecks 128→512, stride 2×2×2      temporal kernel 3 in blocks 1, 3    4×28×28
    conv4  6 (R50) / 23 (R101) bottlenecks 256→1024, stride 1×2×2, temporal in odd blocks 4×14×14
    conv5  3 bottlenecks 512→2048, stride 1×2×2     temporal kernel 3 in block 2 only   4×7×7
    tail   BN → ReLU;  pool → dropout(0.5) → Linear(2048 → classes)

A bottleneck is conv_m1 (kt×1×1, C→mid) → conv_m2 (1×3×3, mid→mid, carries the stride) → conv_m3
(1×1×1, mid→out); the first block of each stage has a projection shortcut conv_w1 (1×1×1, strided).
GloRe units (mid = the stage's bottleneck width, i.e. 2·mid states and mid nodes) follow blocks
1, 3 of conv3 and blocks 1, 3, 5 (R50) or 6, 12, 18 (R101) of conv4 — "+2 Res3, +3 Res4" in the
released README. Module names equal the released ones (``conv3.B01_extra`` for the GloRe unit
after block 1 of conv3, and so on), so released checkpoints load key for key.

Differences from the released file, none affecting weights or outputs at 8×224×224: the global
pool is adaptive (other clip sizes work), dropout is configurable, there is no ``assert T == 8``.
The stem, tail and head are ``videonet.VideoNet``'s; this file holds the block and the table.
"""

from __future__ import annotations

import torch
from torch import nn

from videoglore.models.layers import BnReluConv3d, Triple
from videoglore.models.videonet import Architecture, StageSpec

BN_EPS = 1e-4  # every BatchNorm of the released GloRe video nets


class Bottleneck3d(nn.Module):
    """Pre-activation bottleneck (released ``RESIDUAL_BLOCK``)."""

    def __init__(
        self, in_ch: int, mid: int, out: int, stride: Triple, temporal: bool, first: bool
    ) -> None:
        super().__init__()
        kt = 3 if temporal else 1
        self.conv_m1 = BnReluConv3d(in_ch, mid, (kt, 1, 1), bn_eps=BN_EPS)
        self.conv_m2 = BnReluConv3d(mid, mid, (1, 3, 3), stride=stride, bn_eps=BN_EPS)
        self.conv_m3 = BnReluConv3d(mid, out, (1, 1, 1), bn_eps=BN_EPS)
        # projection shortcut on the first block of a stage (channels and/or stride change)
        self.conv_w1 = BnReluConv3d(in_ch, out, stride=stride, bn_eps=BN_EPS) if first else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, T, H, W) → (N, C_out, T/st, H/s, W/s)
        h = self.conv_m3(self.conv_m2(self.conv_m1(x)))
        shortcut = x if self.conv_w1 is None else self.conv_w1(x)
        return h + shortcut


def _odd(n: int) -> tuple[int, ...]:
    return tuple(range(1, n + 1, 2))


def resnet_architecture(depth: int) -> Architecture:
    """The released R50 / R101 3D nets, with the paper's GloRe positions."""
    if depth not in (50, 101):
        raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
    n4 = 6 if depth == 50 else 23
    glore4 = (1, 3, 5) if depth == 50 else (6, 12, 18)
    stages = (
        StageSpec("conv2", 3, 64, 256, (1, 1, 1), (1, 2, 3)),
        StageSpec("conv3", 4, 128, 512, (2, 2, 2), _odd(4), glore_after=(1, 3), glore_mid=128),
        StageSpec("conv4", n4, 256, 1024, (1, 2, 2), _odd(n4), glore_after=glore4, glore_mid=256),
        StageSpec("conv5", 3, 512, 2048, (1, 2, 2), (2,)),
    )
    return Architecture(
        block=Bottleneck3d,
        stem=32,
        stages=stages,
        bn_eps=BN_EPS,
        dropout=0.5,
        default_clip=(8, 224, 224),
    )
