"""ResNeSt-101 with output stride 8, as in the MCIBI / MCIBI++ zoos (`resnest101os8`).

ResNeSt replaces each bottleneck's 3x3 convolution by a split-attention convolution (radix 2:
the 3x3 grouped convolution produces two candidate feature maps, a small two-layer gate computed
from their pooled sum picks a per-channel softmax mixture). Compared to the zoo's ResNet it also
has a wider deep stem (64, 64, 128 channels), shortcut projections that average-pool before the
1x1 convolution ("ResNet-D"), and, in the one strided block (first block of stage 2), the stride
taken by a 3x3 average pool after the split-attention convolution. Stages 3-4 are dilated (2, 4;
first block of each at half the rate) so the last stage has stride 8.

`state_dict()` keys equal upstream's `backbone_net.*` keys without the prefix. `forward(x)`
returns the four stage outputs (strides 4, 8, 8, 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import EXPANSION, OS8_DILATIONS, OS8_STRIDES, STAGE_PLANES, block_dilations, deep_stem

BLOCKS_PER_STAGE = {101: (3, 4, 23, 3)}
RADIX = 2
REDUCTION_FACTOR = 4
MIN_GATE_CHANNELS = 32


class SplitAttentionConv2d(nn.Module):
    """Radix-2 split-attention 3x3 convolution (groups = 1), upstream names `conv`, `bn0`, `fc1`, `bn1`, `fc2`."""

    def __init__(self, channels: int, dilation: int = 1, radix: int = RADIX) -> None:
        super().__init__()
        gate_channels = max(channels * radix // REDUCTION_FACTOR, MIN_GATE_CHANNELS)
        self.radix = radix
        self.conv = nn.Conv2d(channels, channels * radix, 3, stride=1, padding=dilation, dilation=dilation,
                              groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, gate_channels, 1)
        self.bn1 = nn.BatchNorm2d(gate_channels)
        self.fc2 = nn.Conv2d(gate_channels, channels * radix, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0(self.conv(x)))
        batch = x.shape[0]
        splits = x.view(batch, self.radix, -1, *x.shape[2:])
        gate = F.adaptive_avg_pool2d(splits.sum(dim=1), 1)
        gate = self.fc2(self.relu(self.bn1(self.fc1(gate))))
        # Softmax across the radix splits, separately for every channel.
        weights = F.softmax(gate.view(batch, 1, self.radix, -1).transpose(1, 2), dim=1)
        weights = weights.reshape(batch, self.radix, -1, 1, 1)
        return (weights * splits).sum(dim=1).contiguous()


class SplitAttentionBottleneck(nn.Module):
    """1x1 -> split-attention 3x3 (-> 3x3 average pool when strided) -> 1x1 residual block."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = SplitAttentionConv2d(planes, dilation)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        # The stride is applied by an average pool after the split-attention convolution.
        self.avg_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.avg_layer is not None:
            out = self.avg_layer(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeStOS8(nn.Module):
    """ResNeSt with a 64-64-128 deep stem and dilated stages 3-4; returns the outputs of stages 1-4."""

    def __init__(self, depth: int = 101, in_channels: int = 3, stem_channels: int = 128) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"ResNeSt depth {depth} is not used by the zoo (expected one of {sorted(BLOCKS_PER_STAGE)})")
        self.stem = deep_stem(in_channels, stem_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = stem_channels
        for index, num_blocks in enumerate(BLOCKS_PER_STAGE[depth]):
            planes, stride, dilation = STAGE_PLANES[index], OS8_STRIDES[index], OS8_DILATIONS[index]
            self.add_module(f"layer{index + 1}", self._make_stage(channels, planes, num_blocks, stride, dilation))
            channels = planes * EXPANSION
        self.out_channels = tuple(p * EXPANSION for p in STAGE_PLANES)

    @staticmethod
    def _make_stage(in_channels: int, planes: int, num_blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or in_channels != planes * EXPANSION:
            # Average pool (identity when stride is 1), then the 1x1 projection.
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(in_channels, planes * EXPANSION, 1, bias=False),
                nn.BatchNorm2d(planes * EXPANSION),
            )
        rates = block_dilations(dilation, num_blocks)
        blocks = [SplitAttentionBottleneck(in_channels, planes, stride, rates[0], downsample)]
        blocks += [SplitAttentionBottleneck(planes * EXPANSION, planes, 1, rate) for rate in rates[1:]]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.stem(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4


def resnest101(**kwargs) -> ResNeStOS8:
    """ResNeSt-101, output stride 8."""
    return ResNeStOS8(depth=101, **kwargs)
