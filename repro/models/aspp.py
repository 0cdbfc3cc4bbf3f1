"""Atrous spatial pyramid pooling, the "context within image" module of the ASPP/DeepLabV3 models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv_bn_act, make_activation, resize_to


class ASPP(nn.Module):
    """Parallel 1x1 and dilated 3x3 branches plus an image-pooling branch, fused by a 3x3 conv.

    Names follow upstream: `parallel_branches.<i>`, `global_branch` (pool, conv, BN, act) and
    `bottleneck`.
    """

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int], act: str = "relu") -> None:
        super().__init__()
        self.dilations = tuple(dilations)
        self.parallel_branches = nn.ModuleList(
            conv_bn_act(in_channels, out_channels, 1 if rate == 1 else 3, dilation=rate, act=act) for rate in self.dilations
        )
        self.global_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            make_activation(act),
        )
        self.bottleneck = conv_bn_act(out_channels * (len(self.dilations) + 1), out_channels, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.parallel_branches]
        outputs.append(resize_to(self.global_branch(x), x.shape[2:]))
        return self.bottleneck(torch.cat(outputs, dim=1))
