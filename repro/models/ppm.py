"""Pyramid pooling module, the "context within image" module of the PSPNet-style models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv_bn_act, make_activation, resize_to

# Upstream's pool scales for every PPM in the two zoos.
PPM_POOL_SCALES = (1, 2, 3, 6)


class PyramidPoolingModule(nn.Module):
    """Adaptive-average-pool branches (upsampled back), concatenated with the input, fused by a 3x3 conv.

    Names follow upstream: `branches.<i>` (pool, conv, BN, act) and `bottleneck`.
    """

    def __init__(self, in_channels: int, out_channels: int, pool_scales: Sequence[int] = PPM_POOL_SCALES,
                 act: str = "relu") -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(scale),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                make_activation(act),
            )
            for scale in pool_scales
        )
        self.bottleneck = conv_bn_act(in_channels + out_channels * len(pool_scales), out_channels, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = [x] + [resize_to(branch(x), x.shape[2:]) for branch in self.branches]
        return self.bottleneck(torch.cat(levels, dim=1))
