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

BN_EPS = 1e-4  # every BatchNorm of the released GloRe video nets


def _odd(n: int) -> tuple[int, ...]:
    return tuple(range(1, n + 1, 2))


def resnet_stages(depth: int) -> list[StageSpec]:
    """The four stages of the released R50 / R101 3D nets, with the paper's GloRe positions."""
    if depth not in (50, 101):
        raise ValueError(f"ResNet depth must be 50 or 101, got {depth}")
    conv4_blocks = 6 if depth == 50 else 23
    conv4_glore = (1, 3, 5) if depth == 50 else (6, 12, 18)
    return [
        StageSpec("conv2", 3, 64, 256, (1, 1, 1), (1, 2, 3)),
        StageSpec("conv3", 4, 128, 512, (2, 2, 2), _odd(4), glore_after=(1, 3), glore_mid=128),
        StageSpec(
            "conv4",
            conv4_blocks,
            256,
            1024,
            (1, 2, 2),
            _odd(conv4_blocks),
            glore_after=conv4_glore,
            glore_mid=256,
        ),
        StageSpec("conv5", 3, 512, 2048, (1, 2, 2), (2,)),
    ]


class Bottleneck3d(nn.Module):
    """Pre-activation bottleneck (released ``RESIDUAL_BLOCK``)."""

    def __init__(
        self, in_ch: int, mid: int, out: int, stride: Triple, temporal: bool, project: bool
    ) -> None:
        super().__init__()
        kt = 3 if temporal else 1
        self.conv_m1 = BnReluConv3d(in_ch, mid, (kt, 1, 1), bn_eps=BN_EPS)
        self.conv_m2 = BnReluConv3d(mid, mid, (1, 3, 3), stride=stride, bn_eps=BN_EPS)
        self.conv_m3 = BnReluConv3d(mid, out, (1, 1, 1), bn_eps=BN_EPS)
        # projection shortcut on the first block of a stage (channels and/or stride change)
        self.conv_w1 = BnReluConv3d(in_ch, out, stride=stride, bn_eps=BN_EPS) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, C_in, T, H, W) → (N, C_out, T/st, H/s, W/s)
        h = self.conv_m3(self.conv_m2(self.conv_m1(x)))
        shortcut = x if self.conv_w1 is None else self.conv_w1(x)
        return h + shortcut


def build_stage(
    spec: StageSpec, in_ch: int, width: float, glore: bool, normalize: bool, nodes: float = 1.0
) -> tuple[nn.Sequential, int]:
    """An ``nn.Sequential`` named like the released code: B01, B01_extra (GloRe), B02, ..."""
    mid, out = scale_channels(spec.mid, width), scale_channels(spec.out, width)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, spec.blocks + 1):
        layers[f"B{i:02d}"] = Bottleneck3d(
            in_ch if i == 1 else out,
            mid,
            out,
            stride=spec.stride if i == 1 else (1, 1, 1),
            temporal=i in spec.temporal,
            project=i == 1,
        )
        if glore and i in spec.glore_after:
            glore_mid = scale_channels(spec.glore_mid, width * nodes)
            layers[f"B{i:02d}_extra"] = GloRe(out, glore_mid, dim=3, normalize=normalize)
    return nn.Sequential(layers), out


class ResNet3d(nn.Module):
    """3D ResNet-50/101 lite of the released GloRe code (8×224×224 clips).

    Args:
        depth: 50 or 101.
        glore: insert GloRe units at the released positions (``False`` = the plain baseline).
        num_classes: classifier outputs (400 for Kinetics-400).
        width: channel multiplier; 1.0 is the released net, e.g. 0.125 gives a tiny net for tests.
        dropout: dropout before the classifier (released: 0.5).
        normalize_glore: the GloRe units' 1/L normalisation (released: off).
        glore_nodes: multiplier on the units' nodes K (and states 2K); released: 1 (K = C/4).
    """

    default_clip = (8, 224, 224)

    def __init__(
        self,
        depth: int = 50,
        glore: bool = True,
        num_classes: int = 400,
        width: float = 1.0,
        dropout: float = 0.5,
        normalize_glore: bool = False,
        glore_nodes: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stage_specs = resnet_stages(depth)
        stem = scale_channels(32, width)
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv3d(3, stem, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
                bn=nn.BatchNorm3d(stem, eps=BN_EPS),
                relu=nn.ReLU(inplace=True),
                max_pool=nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            )
        )
        channels = stem
        for spec in self.stage_specs:
            stage, channels = build_stage(
                spec, channels, width, glore, normalize_glore, glore_nodes
            )
            self.add_module(spec.name, stage)
        self.num_features = channels
        # the stem BN/ReLU are post-activation; everything after is pre-activation, hence the tail
        self.tail = nn.Sequential(
            OrderedDict(bn=nn.BatchNorm3d(channels, eps=BN_EPS), relu=nn.ReLU(inplace=True))
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(channels, num_classes)
        init_official(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, T, H, W) → (N, 2048·width, T/2, H/32, W/32)
        h = self.conv1(x)  # (N, 32, T, H/4, W/4)
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
