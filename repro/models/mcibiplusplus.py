"""MCIBI++ / MemoryNetV2 (TPAMI 2022) segmentor, test-time path.

Data flow (upstream's `MCIBIPlusPlus.forward` in TEST mode), x = last backbone output:
  feats_cwi  = context_within_image_module(x)           (ASPP or PPM; absent in the plain "FCN" models)
  logits_cwi = decoder_cwi(feats_cwi)
  feats      = bottleneck(x)                              (3x3 conv-BN-act to 512)
  logits_pr  = decoder_pr(feats)
  gather     = logits_cwi if there is a context module (and not `force_use_preds_pr`) else logits_pr
  _, mem     = memory_module(feats, gather)                (seeded Gaussian class memory read)
  if there is a context module:
      mem = self_attention(feats_cwi, mem)                 (only where the config keeps it)
      with an FPN (UPerNet models): lateral 1x1 convs on the earlier backbone outputs plus
          [mem, feats_cwi] as the top level, top-down sum, 3x3 fpn convs, everything resized to
          the finest level and concatenated
      else: mem = [mem, feats_cwi]
  logits     = decoder_cls(mem)                            -> returned, before any resize

Module names equal upstream's. Training-only parts (auxiliary decoder) are not built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .aspp import ASPP
from .blocks import SelfAttentionBlock, conv_bn_act, make_activation, resize_to
from .memory import GaussianClassMemory
from .ppm import PyramidPoolingModule

FEATS_CHANNELS = 512
TRANSFORM_CHANNELS = 256
DROPOUT = 0.1  # inactive in eval mode
FPN_LATERAL_CHANNELS = 1024


def class_decoder(in_channels: int, num_classes: int, kernel_size: int, act: str,
                  hidden_channels: int = FEATS_CHANNELS) -> nn.Sequential:
    """Upstream's named decoder: conv1 (1x1 or 3x3), bn1, act1, dropout, conv2 (classifier)."""
    decoder = nn.Sequential()
    decoder.add_module("conv1", nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=kernel_size // 2, bias=False))
    decoder.add_module("bn1", nn.BatchNorm2d(hidden_channels))
    decoder.add_module("act1", make_activation(act))
    decoder.add_module("dropout", nn.Dropout2d(DROPOUT))
    decoder.add_module("conv2", nn.Conv2d(hidden_channels, num_classes, 1))
    return decoder


class MCIBIPlusPlusSegmentor(nn.Module):
    """MCIBI++ test-time network; `forward(images)` returns `decoder_cls` logits (N, K, h, w).

    `decoder_kernels` gives the first conv's kernel size of the `pr`, `cwi` and `cls` decoders;
    `fpn_channels` (None = no FPN) the lateral inputs of the UPerNet models (all backbone outputs
    but the last) and `fpn_out_channels` their 3x3 convs' width.
    """

    def __init__(self, backbone: nn.Module, in_channels: int, num_classes: int, *, context: str | None = "aspp",
                 dilations: Sequence[int] = (1, 12, 24, 36), cwi_self_attention: bool = True,
                 decoder_kernels: dict[str, int] | None = None, downsample_before_sa: bool = False,
                 force_use_preds_pr: bool = False, fpn_channels: Sequence[int] | None = None,
                 fpn_out_channels: int = 512, act: str = "relu") -> None:
        super().__init__()
        kernels = {"pr": 1, "cwi": 1, "cls": 1, **(decoder_kernels or {})}
        self.num_classes = num_classes
        self.force_use_preds_pr = force_use_preds_pr
        self.backbone_net = backbone
        self.context_within_image_module: nn.Module | None
        if context == "aspp":
            self.context_within_image_module = ASPP(in_channels, FEATS_CHANNELS, dilations, act=act)
        elif context == "ppm":
            self.context_within_image_module = PyramidPoolingModule(in_channels, FEATS_CHANNELS, act=act)
        elif context is None:
            self.context_within_image_module = None
        else:
            raise ValueError(f"unknown context module {context!r}")
        has_context = self.context_within_image_module is not None
        if has_context and cwi_self_attention:
            self.self_attention = SelfAttentionBlock(FEATS_CHANNELS, FEATS_CHANNELS // 2, FEATS_CHANNELS, act)
        else:
            self.self_attention = None
        self.bottleneck = conv_bn_act(in_channels, FEATS_CHANNELS, 3, act=act)
        self.memory_module = GaussianClassMemory(num_classes, FEATS_CHANNELS, TRANSFORM_CHANNELS, FEATS_CHANNELS,
                                                 downsample_before_sa=downsample_before_sa, act=act)
        if fpn_channels is not None:
            self.lateral_convs = nn.ModuleList(conv_bn_act(c, FPN_LATERAL_CHANNELS, 1, act=act) for c in fpn_channels)
            self.fpn_convs = nn.ModuleList(
                conv_bn_act(FPN_LATERAL_CHANNELS, fpn_out_channels, 3, act=act) for _ in fpn_channels
            )
            cls_in = fpn_out_channels * len(fpn_channels) + 2 * FEATS_CHANNELS
        else:
            self.lateral_convs = None
            self.fpn_convs = None
            cls_in = 2 * FEATS_CHANNELS if has_context else FEATS_CHANNELS
        if fpn_channels is not None and not has_context:
            raise ValueError("the FPN head needs a context module (its top level is [memory, context])")
        self.decoder_pr = class_decoder(FEATS_CHANNELS, num_classes, kernels["pr"], act)
        self.decoder_cwi = class_decoder(FEATS_CHANNELS, num_classes, kernels["cwi"], act) if has_context else None
        self.decoder_cls = class_decoder(cls_in, num_classes, kernels["cls"], act)

    def _fpn(self, earlier: Sequence[torch.Tensor], top: torch.Tensor) -> torch.Tensor:
        assert self.lateral_convs is not None and self.fpn_convs is not None
        levels = [conv(x) for conv, x in zip(self.lateral_convs, earlier)]
        levels.append(top)
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + resize_to(levels[i], levels[i - 1].shape[2:])
        outputs = [conv(levels[i]) for i, conv in enumerate(self.fpn_convs)]
        outputs.append(levels[-1])
        size = outputs[0].shape[2:]
        return torch.cat([resize_to(out, size) for out in outputs], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.backbone_net(images)
        x = outputs[-1]
        feats = self.bottleneck(x)
        logits_pr = self.decoder_pr(feats)
        if self.context_within_image_module is None:
            _, fused = self.memory_module(feats, logits_pr)
            return self.decoder_cls(fused)
        feats_cwi = self.context_within_image_module(x)
        gather_logits = logits_pr if self.force_use_preds_pr else self.decoder_cwi(feats_cwi)
        _, fused = self.memory_module(feats, gather_logits)
        if self.self_attention is not None:
            fused = self.self_attention(feats_cwi, fused)
        top = torch.cat([fused, feats_cwi], dim=1)
        if self.lateral_convs is not None:
            top = self._fpn(outputs[:-1], top)
        return self.decoder_cls(top)
