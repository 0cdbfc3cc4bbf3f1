"""ResNet-50/101 with a deep 3x3 stem and output stride 8, as in the MCIBI / MCIBI++ zoos.

The zoo's `resnet50os8` / `resnet101os8` models use the "v1c" ResNet: the 7x7 stem convolution is
replaced by three 3x3 convolutions (32, 32, 64 channels; the first with stride 2), followed by a
3x3/2 max pool. Stages 3 and 4 keep stride 1 and dilate their 3x3 convolutions instead (2 and 4,
the first block of each dilated stage using half that rate), so the last stage has stride 8.

`state_dict()` keys equal upstream's `backbone_net.*` keys with that prefix removed (`stem.<i>`,
`layer<k>.<j>.conv1`, ..., `downsample.<i>`). Normalisation is `nn.BatchNorm2d`: upstream trains
with SyncBatchNorm, which has the same parameters and, in eval mode, the same arithmetic. The
backbone's activations are always ReLU (upstream passes only its normalisation choice down to the
backbone). `forward(x)` returns the four stage outputs (strides 4, 8, 8, 8).
"""

from __future__ import annotations

import torch
from torch import nn

# Stage layout of the two depths used by the zoo (blocks per stage).
BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Output stride 8: strides and dilations of stages 1-4.
OS8_STRIDES = (1, 2, 1, 1)
OS8_DILATIONS = (1, 1, 2, 4)
STAGE_PLANES = (64, 128, 256, 512)
EXPANSION = 4


def deep_stem(in_channels: int, stem_channels: int) -> nn.Sequential:
    """Three 3x3 conv-BN-ReLU layers (half, half, full width); indices match upstream's `stem.<i>`."""
    half = stem_channels // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, stem_channels, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU(inplace=True),
    )


def block_dilations(dilation: int, num_blocks: int) -> list[int]:
    """Per-block dilation of a stage: the first block of a dilated stage uses half the rate."""
    rates = [dilation] * num_blocks
    if dilation > 1:
        rates[0] = dilation // 2
    return rates


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 residual block ("pytorch" style: stride on the 3x3)."""

    expansion = EXPANSION

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetOS8(nn.Module):
    """Deep-stem ResNet with dilated stages 3-4; returns the outputs of stages 1-4."""

    def __init__(self, depth: int = 101, in_channels: int = 3, stem_channels: int = 64) -> None:
        super().__init__()
        if depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"ResNet depth {depth} is not used by the zoo (expected one of {sorted(BLOCKS_PER_STAGE)})")
        self.depth = depth
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
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, planes * EXPANSION, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * EXPANSION),
            )
        rates = block_dilations(dilation, num_blocks)
        blocks = [Bottleneck(in_channels, planes, stride, rates[0], downsample)]
        blocks += [Bottleneck(planes * EXPANSION, planes, 1, rate) for rate in rates[1:]]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.stem(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4


def resnet50(**kwargs) -> ResNetOS8:
    """ResNet-50 (v1c deep stem), output stride 8."""
    return ResNetOS8(depth=50, **kwargs)


def resnet101(**kwargs) -> ResNetOS8:
    """ResNet-101 (v1c deep stem), output stride 8."""
    return ResNetOS8(depth=101, **kwargs)
