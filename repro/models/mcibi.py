"""MCIBI (ICCV 2021) segmentor with an ASPP context module ("mcibi_deeplabv3_*"), test-time path.

Data flow (upstream's `MCIBI.forward` in TEST mode):
  backbone -> last selected output x (ViT: LayerNorm over channels; some HRNet configs: a 3x3/2
  conv-BN-act `downsample_backbone`)
  feats_ms = context_within_image_module(x)           (ASPP)
  feats    = bottleneck(x)                             (3x3 conv-BN-act to 512)
  coarse   = decoder_stage1(feats)                     (class logits)
  _, fused = memory_module(feats, coarse, feats_ms)    (memory read + attention + fusion)
  logits   = decoder_stage2(fused)                     -> returned, at the backbone's resolution

Training-only parts (auxiliary decoders) are not built; `repro.models.checkpoint` skips their
weights. Module names equal upstream's, so upstream checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .aspp import ASPP
from .blocks import conv_bn_act
from .memory import FeatureMemory
from .ppm import PyramidPoolingModule

FEATS_CHANNELS = 512
TRANSFORM_CHANNELS = 256
DROPOUT = 0.1  # inactive in eval mode; kept so the module layout (and key indices) match upstream


def stage_decoder(channels: int, num_classes: int, act: str) -> nn.Sequential:
    """conv1x1-BN-act, dropout, classifier: upstream's `decoder_stage{1,2}` (children 0-4)."""
    unit = conv_bn_act(channels, channels, 1, act=act)
    return nn.Sequential(*unit, nn.Dropout2d(DROPOUT), nn.Conv2d(channels, num_classes, 1))


class MCIBISegmentor(nn.Module):
    """MCIBI test-time network; `forward(images)` returns `decoder_stage2` logits (N, K, h, w)."""

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int, *, context: str = "aspp",
                 dilations: Sequence[int] = (1, 12, 24, 36), act: str = "relu",
                 output_norm_channels: Sequence[int] | None = None, output_norm_eps: float = 1e-6,
                 downsample_backbone: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone_net = backbone
        if output_norm_channels is not None:
            # ViT: one LayerNorm per backbone output (upstream's `norm_layers`); only the last one
            # feeds the test-time head.
            self.norm_layers = nn.ModuleList(nn.LayerNorm(c, eps=output_norm_eps) for c in output_norm_channels)
        else:
            self.norm_layers = None
        self.downsample_backbone = conv_bn_act(in_channels, in_channels, 3, stride=2, act=act) if downsample_backbone else None
        if context == "aspp":
            self.context_within_image_module = ASPP(in_channels, FEATS_CHANNELS, dilations, act=act)
        elif context == "ppm":
            self.context_within_image_module = PyramidPoolingModule(in_channels, FEATS_CHANNELS, act=act)
        else:
            raise ValueError(f"unknown context module {context!r}")
        self.bottleneck = conv_bn_act(in_channels, FEATS_CHANNELS, 3, act=act)
        self.memory_module = FeatureMemory(num_classes, FEATS_CHANNELS, TRANSFORM_CHANNELS, FEATS_CHANNELS,
                                           use_context_within_image=True, act=act)
        self.decoder_stage1 = stage_decoder(FEATS_CHANNELS, num_classes, act)
        self.decoder_stage2 = stage_decoder(FEATS_CHANNELS, num_classes, act)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.backbone_net(images)
        # Upstream transforms every selected output but the test-time head reads only the last.
        x = outputs[-1]
        if self.norm_layers is not None:
            norm = self.norm_layers[len(outputs) - 1]
            x = norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        if self.downsample_backbone is not None:
            x = self.downsample_backbone(x)
        feats_ms = self.context_within_image_module(x)
        feats = self.bottleneck(x)
        coarse_logits = self.decoder_stage1(feats)
        _, fused = self.memory_module(feats, coarse_logits, feats_ms)
        return self.decoder_stage2(fused)
