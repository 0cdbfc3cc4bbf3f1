"""HRNetV2-W48 backbone, as sssegmentation builds it for the MCIBI / MCIBI++ HRNet models.

A high-resolution network: a stride-4 stem (two stride-2 3x3 convolutions), one bottleneck
stage, then stages 2-4 that keep 2, 3 and 4 parallel branches (widths 48, 96, 192, 384 at
strides 4, 8, 16, 32) and repeatedly exchange information between them.

Output contract (same as upstream for every HRNet config of the two zoos):
``forward(x)`` returns a 1-tuple ``(features,)`` where ``features`` is the four stage-4 branches
bilinearly resized to the stride-4 branch's size and concatenated: (N, 720, H4, W4) with
H4 = ceil(ceil(H / 2) / 2). The segmentors select it with ``selected_indices = (0, 0, 0, 0)``.

``state_dict()`` keys are upstream's ``backbone_net.*`` keys with that prefix removed.
Normalisation is ``nn.BatchNorm2d`` (upstream builds SyncBatchNorm: same parameters and, in eval
mode, the same arithmetic).

``mcibi_version``: the upstream config switch of the same name. When true the stem has no ReLU
between ``bn1`` and ``conv2``: upstream's stem from 2020 until its commit 4602275d (2025-06-08,
"refactor hrnet"), which added that ReLU, so every MCIBI / MCIBI++ HRNet checkpoint was trained
without it. Upstream's current configs set it only for ``mcibi_deeplabv3_hrnetv2w48_cityscapes``
and ``mcibiplusplus_aspp_hrnetv2w48_cityscapes``; for the ade20k, cocostuff10k and lip configs
repro sets it in the "training-era" variant (repro.models.architectures.ERA_STEM_CONFIGS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]

W48_WIDTHS = (48, 96, 192, 384)
# Number of HR modules in stages 2, 3 and 4; every branch of every module holds 4 basic blocks.
W48_MODULES_PER_STAGE = (1, 4, 3)
BLOCKS_PER_BRANCH = 4
STEM_CHANNELS = 64
STAGE1_PLANES = 64
STAGE1_BLOCKS = 4


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, norm_layer: NormLayer, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, norm_layer: NormLayer, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.downsample = downsample  # registered first so state_dict() lists keys in upstream's order
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def _residual_stack(
    block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int, num_blocks: int, norm_layer: NormLayer
) -> nn.Sequential:
    """`num_blocks` blocks; the first gets a 1x1 projection when the channel count changes."""
    out_channels = planes * block.expansion
    projection = None
    if in_channels != out_channels:
        projection = nn.Sequential(_conv1x1(in_channels, out_channels), norm_layer(out_channels))
    blocks = [block(in_channels, planes, norm_layer, projection)]
    blocks += [block(out_channels, planes, norm_layer) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


class MultiResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by an all-to-all fusion of their outputs.

    Fusion into branch i: a finer branch j < i is brought down by a chain of stride-2 3x3
    convolutions; a coarser branch j > i by a 1x1 convolution and a x2^(j-i) bilinear upsample,
    then (as upstream does) resized once more to branch i's exact size, which differs from
    2^(j-i) times branch j's size whenever a stride-2 convolution met an odd size.
    """

    def __init__(self, widths: Sequence[int], num_blocks: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.num_branches = len(widths)
        self.branches = nn.ModuleList(
            _residual_stack(BasicBlock, width, width, num_blocks, norm_layer) for width in widths
        )
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fusion_path(widths, source, target, norm_layer) for source in range(self.num_branches))
            for target in range(self.num_branches)
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fusion_path(widths: Sequence[int], source: int, target: int, norm_layer: NormLayer) -> nn.Module | None:
        if source == target:
            return None
        if source > target:
            return nn.Sequential(
                _conv1x1(widths[source], widths[target]),
                norm_layer(widths[target]),
                nn.Upsample(scale_factor=2 ** (source - target), mode="bilinear", align_corners=False),
            )
        steps: list[nn.Module] = []
        for _ in range(target - source - 1):  # intermediate halvings keep the source width
            steps.append(nn.Sequential(_conv3x3(widths[source], widths[source], 2), norm_layer(widths[source]), nn.ReLU(inplace=True)))
        steps.append(nn.Sequential(_conv3x3(widths[source], widths[target], 2), norm_layer(widths[target])))
        return nn.Sequential(*steps)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        features = [branch(x) for branch, x in zip(self.branches, inputs)]
        fused = []
        for target, paths in enumerate(self.fuse_layers):
            target_size = features[target].shape[2:]
            total: torch.Tensor | None = None
            for source, path in enumerate(paths):
                if path is None:
                    contribution = features[source]
                elif source > target:
                    contribution = F.interpolate(path(features[source]), size=target_size, mode="bilinear", align_corners=False)
                else:
                    contribution = path(features[source])
                total = contribution if total is None else total + contribution
            fused.append(self.relu(total))
        return fused


def _transition(previous: Sequence[int], current: Sequence[int], norm_layer: NormLayer) -> nn.ModuleList:
    """Adapts the previous stage's branches to the next stage's and spawns its new, coarser branch.

    An existing branch gets a 3x3 conv only if its width changes (None otherwise); the new
    branch comes from the previous stage's coarsest output through stride-2 3x3 convolutions.
    """
    paths: list[nn.Module | None] = []
    for index, width in enumerate(current):
        if index < len(previous):
            if width == previous[index]:
                paths.append(None)
            else:
                paths.append(nn.Sequential(_conv3x3(previous[index], width), norm_layer(width), nn.ReLU(inplace=True)))
            continue
        steps = []
        num_halvings = index + 1 - len(previous)
        for step in range(num_halvings):
            out_width = width if step == num_halvings - 1 else previous[-1]
            steps.append(nn.Sequential(_conv3x3(previous[-1], out_width, 2), norm_layer(out_width), nn.ReLU(inplace=True)))
        paths.append(nn.Sequential(*steps))
    return nn.ModuleList(paths)


class HRNetV2(nn.Module):
    """HRNetV2 with upstream's module names; see the module docstring for the output contract."""

    def __init__(
        self,
        widths: Sequence[int] = W48_WIDTHS,
        modules_per_stage: Sequence[int] = W48_MODULES_PER_STAGE,
        blocks_per_branch: int = BLOCKS_PER_BRANCH,
        in_channels: int = 3,
        norm_layer: NormLayer = nn.BatchNorm2d,
        mcibi_version: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 4 or len(modules_per_stage) != 3:
            raise ValueError("HRNetV2 needs 4 branch widths and a module count for each of stages 2-4")
        self.mcibi_version = mcibi_version
        self.conv1 = _conv3x3(in_channels, STEM_CHANNELS, 2)
        self.bn1 = norm_layer(STEM_CHANNELS)
        self.conv2 = _conv3x3(STEM_CHANNELS, STEM_CHANNELS, 2)
        self.bn2 = norm_layer(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _residual_stack(Bottleneck, STEM_CHANNELS, STAGE1_PLANES, STAGE1_BLOCKS, norm_layer)

        previous = [STAGE1_PLANES * Bottleneck.expansion]
        for stage, num_modules in enumerate(modules_per_stage, start=2):
            current = list(widths[:stage])
            setattr(self, f"transition{stage - 1}", _transition(previous, current, norm_layer))
            setattr(
                self,
                f"stage{stage}",
                nn.Sequential(*(MultiResolutionModule(current, blocks_per_branch, norm_layer) for _ in range(num_modules))),
            )
            previous = current

    def _apply_transition(self, transition: nn.ModuleList, previous: list[torch.Tensor]) -> list[torch.Tensor]:
        # Upstream feeds every newly created branch from the previous stage's coarsest output.
        out = []
        for index, path in enumerate(transition):
            if index < len(previous):
                out.append(previous[index] if path is None else path(previous[index]))
            else:
                out.append(path(previous[-1]))
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = self.bn1(self.conv1(x))
        if not self.mcibi_version:  # the ReLU upstream added in 4602275d (2025-06-08)
            x = self.relu(x)
        x = self.relu(self.bn2(self.conv2(x)))
        branches = [self.layer1(x)]
        for stage in (2, 3, 4):
            branches = self._apply_transition(getattr(self, f"transition{stage - 1}"), branches)
            branches = getattr(self, f"stage{stage}")(branches)
        height = max(b.shape[2] for b in branches)
        width = max(b.shape[3] for b in branches)
        resized = [F.interpolate(b, size=(height, width), mode="bilinear", align_corners=False) for b in branches]
        return (torch.cat(resized, dim=1),)


def hrnetv2_w48(**kwargs) -> HRNetV2:
    """HRNetV2-W48 (branch widths 48/96/192/384) in eval mode; kwargs go to `HRNetV2`."""
    return HRNetV2(**kwargs).eval()
