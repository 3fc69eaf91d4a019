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
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from videoglore.models.glore import GloRe
from videoglore.models.layers import (
    BnReluConv3d,
    StageSpec,
    Triple,
    init_official,
    scale_channels,
)

GROUPS = 16  # fibres
BN_EPS = 1e-5  # the released MF-Net uses PyTorch's default BatchNorm eps


def mfnet_stages() -> list[StageSpec]:
    """The four stages of the released MF-Net 3D, with our GloRe positions (see module doc)."""
    every = (1, 2, 3, 4, 5, 6)  # all MF units have a 3×3×3 first conv
    return [
        StageSpec("conv2", 3, 96, 96, (2, 1, 1), every[:3]),
        StageSpec("conv3", 4, 192, 192, (1, 2, 2), every[:4], glore_after=(1, 3), glore_mid=48),
        StageSpec("conv4", 6, 384, 384, (1, 2, 2), every, glore_after=(1, 3, 5), glore_mid=96),
        StageSpec("conv5", 3, 768, 768, (1, 2, 2), every[:3]),
    ]


class MFUnit3d(nn.Module):
    """Multi-fibre unit (released ``MF_UNIT``)."""

    def __init__(self, in_ch: int, mid: int, out: int, stride: Triple, first: bool) -> None:
        super().__init__()
        mux = mid // 4
        self.conv_i1 = BnReluConv3d(in_ch, mux, bn_eps=BN_EPS)
        self.conv_i2 = BnReluConv3d(mux, in_ch, bn_eps=BN_EPS)
        self.conv_m1 = BnReluConv3d(
            in_ch, mid, (3, 3, 3), stride=stride, groups=GROUPS, bn_eps=BN_EPS
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


class MFNet3d(nn.Module):
    """MF-Net 3D for 16×224×224 clips, optionally with GloRe units.

    Args:
        glore: insert GloRe units in conv3/conv4 (``mfnet_glore``).
        num_classes: classifier outputs.
        width: channel multiplier; every count is rounded to a multiple of 16 (the fibres).
        dropout: dropout before the classifier (released: none for Kinetics training).
        normalize_glore: the GloRe units' 1/L normalisation.
        glore_nodes: multiplier on the units' nodes K (and states 2K).
    """

    default_clip = (16, 224, 224)

    def __init__(
        self,
        glore: bool = False,
        num_classes: int = 400,
        width: float = 1.0,
        dropout: float = 0.0,
        normalize_glore: bool = False,
        glore_nodes: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stage_specs = mfnet_stages()
        stem = scale_channels(16, width, GROUPS)
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv3d(3, stem, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                bn=nn.BatchNorm3d(stem, eps=BN_EPS),
                relu=nn.ReLU(inplace=True),
            )
        )
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        channels = stem
        for spec in self.stage_specs:
            mid = scale_channels(spec.mid, width, GROUPS)
            out = scale_channels(spec.out, width, GROUPS)
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            for i in range(1, spec.blocks + 1):
                stride = spec.stride if i == 1 else (1, 1, 1)
                layers[f"B{i:02d}"] = MFUnit3d(channels, mid, out, stride, first=i == 1)
                channels = out
                if glore and i in spec.glore_after:
                    glore_mid = scale_channels(spec.glore_mid, width * glore_nodes)
                    layers[f"B{i:02d}_extra"] = GloRe(out, glore_mid, 3, normalize_glore)
            self.add_module(spec.name, nn.Sequential(layers))
        self.num_features = channels
        self.tail = nn.Sequential(
            OrderedDict(bn=nn.BatchNorm3d(channels, eps=BN_EPS), relu=nn.ReLU(inplace=True))
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(channels, num_classes)
        init_official(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, T, H, W) → (N, 768·width, T/2, H/32, W/32)
        h = self.maxpool(self.conv1(x))  # (N, 16, T, H/4, W/4)
        for spec in self.stage_specs:
            h = getattr(self, spec.name)(h)
        return self.tail(h)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # features: (N, C, t, h, w) → (N, num_classes), or (N, C) pooled when pre_logits
        h = self.pool(features).flatten(1)
        if pre_logits:
            return h
        return self.classifier(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
