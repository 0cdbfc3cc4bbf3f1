"""The dataset-level class memories of MCIBI (v1) and MCIBI++ (v2) and how they are read at test time.

Both read the memory the same way: the coarse logits give each pixel a softmax distribution over
classes, the pixel's "memory feature" is the probability-weighted sum of the class vectors, a
self-attention block relates the pixel features to those memory features, and a 3x3 conv fuses
the result with the pixel features.

- v1 (`FeatureMemory`, key `memory_module.memory` of shape (K, 1, C)) stores one feature vector
  per class.
- v2 (`GaussianClassMemory`, key `memory_module.memory` of shape (K, 2)) stores a per-class
  (mean, std) pair. At inference upstream turns it into one vector per class by drawing C values
  from N(mean_c, std_c) with torch's CPU generator seeded with the class index c. We draw the
  same numbers with a local `torch.Generator` (the global RNG is left alone) and cache them until
  the memory parameter changes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SelfAttentionBlock, conv_bn_act, resize_to


def class_weights(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> (B*H*W, K) softmax over classes, pixels in row-major (b, h, w) order."""
    num_classes = logits.shape[1]
    return F.softmax(logits.permute(0, 2, 3, 1).reshape(-1, num_classes), dim=-1)


def pixels_to_map(rows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """(B*H*W, C) -> (B, C, H, W)."""
    return rows.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()


class FeatureMemory(nn.Module):
    """MCIBI's memory: one stored feature vector per class (`num_feats_per_cls` = 1 in every zoo config)."""

    def __init__(self, num_classes: int, feats_channels: int = 512, transform_channels: int = 256,
                 out_channels: int = 512, use_context_within_image: bool = True, act: str = "relu") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.memory = nn.Parameter(torch.zeros(num_classes, 1, feats_channels), requires_grad=False)
        self.self_attention = SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act)
        self.bottleneck = conv_bn_act(feats_channels * 2, out_channels, 3, act=act)
        self.use_context_within_image = use_context_within_image
        if use_context_within_image:
            self.self_attention_ms = SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act)
            self.bottleneck_ms = conv_bn_act(feats_channels * 2, out_channels, 3, act=act)

    def forward(self, feats: torch.Tensor, logits: torch.Tensor,
                feats_ms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = feats.shape
        memory = self.memory.detach()
        selected = pixels_to_map(torch.matmul(class_weights(logits), memory[:, 0, :]), batch, height, width)
        selected = self.self_attention(feats, selected)
        output = self.bottleneck(torch.cat([feats, selected], dim=1))
        if self.use_context_within_image:
            if feats_ms is None:
                raise ValueError("this memory fuses the context-within-image features; pass feats_ms")
            feats_ms = self.self_attention_ms(feats, feats_ms)
            output = self.bottleneck_ms(torch.cat([feats_ms, output], dim=1))
        return memory, output


def draw_class_vectors(mean_std: torch.Tensor, channels: int) -> torch.Tensor:
    """Upstream's test-time draw: class c's vector is N(mean_c, std_c) of length `channels`,
    drawn with torch's CPU generator seeded with c. Returns a CPU (K, channels) tensor in torch's
    default dtype: upstream's `torch.full(shape, memory[c, 0])` takes that dtype whatever the
    model's (float32 normally, also for a `.double()` model), and the forward then casts the
    draws to the model's dtype (`type_as`)."""
    values = mean_std.detach().to(device="cpu", dtype=torch.get_default_dtype())
    generator = torch.Generator(device="cpu")
    rows = []
    for class_index in range(values.shape[0]):
        generator.manual_seed(class_index)
        mean = torch.full((1, channels), values[class_index, 0].item())
        std = torch.full((1, channels), values[class_index, 1].item())
        rows.append(torch.normal(mean, std, generator=generator))
    return torch.cat(rows, dim=0)


class GaussianClassMemory(nn.Module):
    """MCIBI++'s memory: a per-class (mean, std) pair, read through seeded draws (see module docs)."""

    def __init__(self, num_classes: int, feats_channels: int = 512, transform_channels: int = 256,
                 out_channels: int = 512, downsample_before_sa: bool = False, act: str = "relu") -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feats_channels = feats_channels
        if downsample_before_sa:
            self.downsample_before_sa = conv_bn_act(feats_channels, feats_channels, 3, stride=2, act=act)
        else:
            self.downsample_before_sa = None
        self.memory = nn.Parameter(
            torch.cat([torch.zeros(num_classes, 1), torch.ones(num_classes, 1)], dim=1), requires_grad=False
        )
        self.self_attention = SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act)
        self.bottleneck = conv_bn_act(feats_channels * 2, out_channels, 3, act=act)
        # Cache of the drawn vectors: the CPU draw plus one copy per (device, dtype) it was used on,
        # valid while the memory parameter keeps the same storage and version counter.
        self._draw_key: tuple[Any, ...] | None = None
        self._draws: dict[Any, torch.Tensor] = {}  # "drawn": the CPU draw; (device, dtype): copies
        self._register_load_state_dict_pre_hook(self._on_load_state_dict)

    def _on_load_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.invalidate_cache()

    def invalidate_cache(self) -> None:
        """Forget the drawn vectors (needed only after writing to `memory.data` directly)."""
        self._draw_key = None
        self._draws = {}

    def class_vectors(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The (K, C) vectors upstream draws at test time, on `device` in `dtype` (cached)."""
        param = self.memory
        key = (param.device, param.dtype, param.data_ptr(), param._version, torch.get_default_dtype())
        if key != self._draw_key:
            cpu_draw = draw_class_vectors(param, self.feats_channels)
            self._draws = {"drawn": cpu_draw}
            self._draw_key = key
        device = torch.device(device) if device is not None else param.device
        dtype = dtype or param.dtype
        cached = self._draws.get((device, dtype))
        if cached is None:
            cached = self._draws["drawn"].to(device=device, dtype=dtype)
            self._draws[(cached.device, cached.dtype)] = cached
        return cached

    def forward(self, feats: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = feats.shape
        weights = class_weights(logits)
        memory = self.class_vectors(weights.device, weights.dtype)
        selected = pixels_to_map(torch.matmul(weights, memory), batch, height, width)
        if self.downsample_before_sa is not None:
            attended = self.self_attention(self.downsample_before_sa(feats), self.downsample_before_sa(selected))
            selected = resize_to(attended, feats.shape[2:])
        else:
            selected = self.self_attention(feats, selected)
        output = self.bottleneck(torch.cat([feats, selected], dim=1))
        return memory, output
