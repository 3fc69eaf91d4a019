"""One skeleton for every network here: stem → stages → tail → pool → dropout → classifier.

The released 3D ResNets (facebookresearch/GloRe ``network/resnet{50,101}_3d_gcn_x5.py``) and MF-Net
(cypw/PyTorch-MFNet ``network/mfnet_3d.py``) share this shape and the same stem; they differ only
in their block, their stage table and their BatchNorm eps. So an architecture file defines just
those, as an ``Architecture``, and ``build_video_net`` assembles the ``VideoNet`` (the roles of
torchvision's ``VideoResNet`` and ``_video_resnet``)::

    clip (N, 3, T, H, W)
    conv1    stem: Conv(3→stem, 3×5×5, stride 1×2×2) → BN → ReLU → MaxPool(1×3×3, stride 1×2×2)
    conv2-5  one StageSpec each: blocks B01, B02, ... and a GloRe unit B0i_extra after some
    tail     BN → ReLU  (the blocks are pre-activation, so the last sum still needs both)
    pool → dropout → classifier                                  → logits (N, num_classes)

Module names are the released ones, so released checkpoints load key for key. Modules are created
in this order, so a seed gives the same initial weights as the released layout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from videoglore.models.glore import GloRe
from videoglore.models.layers import Triple, scale_channels, xavier_init


@dataclass(frozen=True)
class StageSpec:
    """One residual stage as data. Block indices are 1-based, as in the released module names."""

    name: str  # module name: conv2 ... conv5 (the released names, so checkpoints load)
    blocks: int
    mid: int  # bottleneck / fibre width at width=1
    out: int  # output channels at width=1
    stride: Triple  # (t, h, w) stride of the first block
    temporal: tuple[int, ...]  # blocks whose first conv has temporal kernel 3 (others 1)
    glore_after: tuple[int, ...] = ()  # blocks followed by a GloRe unit
    glore_mid: int = 0  # the GloRe units' mid_channels at width=1 (S = 2·mid states, mid nodes)


# block(in_channels, mid, out, stride, temporal, first): ``first`` = first block of its stage
Block = Callable[[int, int, int, Triple, bool, bool], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A network family as data: its block, stem width, stage table and released settings."""

    block: Block
    stem: int  # stem output channels at width=1
    stages: tuple[StageSpec, ...]
    bn_eps: float  # every BatchNorm of the network
    dropout: float  # released dropout before the classifier
    default_clip: Triple  # (T, H, W) of the released training clips
    divisor: int = 1  # block channel counts are rounded to multiples of this (MF-Net: 16 fibres)


def video_stem(channels: int, bn_eps: float) -> nn.Sequential:
    """The stem of both released families (``conv1``): (N, 3, T, H, W) → (N, C, T, H/4, W/4)."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv3d(3, channels, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
            bn=nn.BatchNorm3d(channels, eps=bn_eps),
            relu=nn.ReLU(inplace=True),
            max_pool=nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
    )


@dataclass(frozen=True)
class GloReSettings:
    """How the GloRe units of a network are built (``None`` in ``build_stage``: no units)."""

    normalize: bool = False  # the units' 1/L normalisation (released: off)
    nodes: float = 1.0  # multiplier on each unit's K nodes and 2K states (released: 1)


def build_stage(
    spec: StageSpec, arch: Architecture, in_ch: int, width: float, glore: GloReSettings | None
) -> tuple[nn.Sequential, int]:
    """The blocks of one stage named like the released code (B01, B01_extra, B02, ...), and its
    output channels."""
    mid = scale_channels(spec.mid, width, arch.divisor)
    out = scale_channels(spec.out, width, arch.divisor)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, spec.blocks + 1):
        stride = spec.stride if i == 1 else (1, 1, 1)
        first_in = in_ch if i == 1 else out
        layers[f"B{i:02d}"] = arch.block(first_in, mid, out, stride, i in spec.temporal, i == 1)
        if glore is not None and i in spec.glore_after:
            nodes = scale_channels(spec.glore_mid, width * glore.nodes)
            layers[f"B{i:02d}_extra"] = GloRe(out, nodes, dim=3, normalize=glore.normalize)
    return nn.Sequential(layers), out


class VideoNet(nn.Module):
    """A 3D network: ``conv1`` (stem) → named stages → ``tail`` → pool → dropout → ``classifier``.

    The uniform model API: ``forward``, ``forward_features`` (the last feature map),
    ``forward_head`` (pool → dropout → classifier, or the pooled features with ``pre_logits``),
    ``num_classes``, ``num_features`` and ``default_clip`` (T, H, W) of the released training clips.
    Initialised as the released code does (``xavier_init``, then every GloRe unit the identity).
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[tuple[str, nn.Module]],
        num_features: int,
        num_classes: int,
        dropout: float,
        bn_eps: float,
        default_clip: Triple,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = num_features
        self.default_clip = default_clip
        self.conv1 = stem
        self.stage_names = [name for name, _ in stages]
        for name, stage in stages:
            self.add_module(name, stage)
        # the stem BN/ReLU are post-activation; everything after is pre-activation, hence the tail
        self.tail = nn.Sequential(
            OrderedDict(bn=nn.BatchNorm3d(num_features, eps=bn_eps), relu=nn.ReLU(inplace=True))
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(num_features, num_classes)
        xavier_init(self)
        for module in self.modules():
            if isinstance(module, GloRe):
                module.zero_blocker()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, 3, T, H, W) → (N, num_features, t, H/32, W/32); t = T/2 for both families
        h = self.conv1(x)  # (N, stem, T, H/4, W/4)
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return self.tail(h)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # features: (N, C, t, h, w) → (N, num_classes), or (N, C) pooled when pre_logits
        h = self.pool(features).flatten(1)
        if pre_logits:
            return h
        return self.classifier(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_video_net(
    arch: Architecture,
    *,
    glore: bool,
    num_classes: int = 400,
    width: float = 1.0,
    dropout: float | None = None,
    normalize_glore: bool = False,
    glore_nodes: float = 1.0,
) -> VideoNet:
    """Build a network of family ``arch``.

    Args:
        arch: the family's table (``resnet3d.resnet_architecture``, ``mfnet3d.MFNET``).
        glore: insert GloRe units after the blocks each ``StageSpec.glore_after`` names.
        num_classes: classifier outputs (400 for Kinetics-400).
        width: channel multiplier; 1.0 is the released net, e.g. 0.125 gives a tiny net for tests.
        dropout: dropout before the classifier; ``None`` = the released value of the family.
        normalize_glore: the GloRe units' 1/L normalisation (released: off).
        glore_nodes: multiplier on the units' nodes K (and states 2K); released: 1 (K = C/4).
    """
    settings = GloReSettings(normalize_glore, glore_nodes) if glore else None
    channels = scale_channels(arch.stem, width, arch.divisor)
    stem = video_stem(channels, arch.bn_eps)  # built first: the released creation order
    stages = []
    for spec in arch.stages:
        stage, channels = build_stage(spec, arch, channels, width, settings)
        stages.append((spec.name, stage))
    return VideoNet(
        stem,
        stages,
        num_features=channels,
        num_classes=num_classes,
        dropout=arch.dropout if dropout is None else dropout,
        bn_eps=arch.bn_eps,
        default_clip=arch.default_clip,
    )
