"""Building blocks shared by the 3D networks: pre-activation conv, channel scaling, initialisation.

Both released code bases (facebookresearch/GloRe ``network/resnet*_3d_gcn_x5.py`` and
cypw/PyTorch-MFNet ``network/mfnet_3d.py``) build every layer as BN → ReLU → Conv (the
pre-activation order of He et al., "Identity mappings in deep residual networks"), with the
sub-module names ``bn`` / ``relu`` / ``conv``. We keep those names so that released checkpoints load
without renaming keys.
"""

from __future__ import annotations

import torch
from torch import nn

Triple = tuple[int, int, int]


class BnReluConv3d(nn.Module):
    """Pre-activation unit: BatchNorm3d → ReLU → Conv3d (no conv bias), as ``BN_AC_CONV3D``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        groups: int = 1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)  # "same" padding for the odd kernels used here
        self.bn = nn.BatchNorm3d(in_channels, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.bn(x)))


def scale_channels(channels: int, width: float, divisor: int = 1) -> int:
    """``channels × width`` rounded to a multiple of ``divisor`` (at least ``divisor``).

    ``divisor`` keeps grouped convolutions valid (MF-Net uses 16 groups everywhere). ``width=1``
    returns the official count unchanged.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    scaled = int(round(channels * width / divisor)) * divisor
    return max(divisor, scaled)


def xavier_init(net: nn.Module) -> None:
    """Initialise like ``network/initializer.py::xavier`` of the released code.

    Every Conv (1D/2D/3D, including the GCN's 1-D convs) and Linear weight: Xavier-uniform with gain
    1; every bias: zero; every BatchNorm: weight 1, bias 0, fresh running statistics. The one
    initialisation of the project: the networks and a lone GloRe unit both use it, and then zero
    their GloRe units' ``blocker`` (``GloRe.zero_blocker``) so that a fresh unit is the identity.
    """
    for module in net.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            nn.init.xavier_uniform_(module.weight, gain=1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
