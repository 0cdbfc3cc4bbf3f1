"""Small building blocks shared by the MCIBI / MCIBI++ heads.

Layouts (and therefore state-dict names) follow upstream: a "conv-BN-act" unit is an
`nn.Sequential` whose children are numbered 0 (conv), 1 (BN), 2 (activation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Activation names used by the architecture table; upstream's LIP MCIBI ResNet heads use
# LeakyReLU(0.01), everything else ReLU.
ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_RELU_SLOPE = 0.01


def make_activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True)
    raise ValueError(f"unknown activation {kind!r} (expected one of {ACTIVATIONS})")


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 1, *, act: str = "relu",
                dilation: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> activation, as children 0, 1, 2."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        make_activation(act),
    )


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=False (every resize inside the zoo's heads)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SelfAttentionBlock(nn.Module):
    """Non-local attention of upstream's MCIBI heads: queries from one map, keys/values from another.

    Query and key projections are two conv-BN-act units, value and output projections one each;
    the similarity is scaled by transform_channels ** -0.5 before the softmax over key positions.
    """

    def __init__(self, in_channels: int, transform_channels: int, out_channels: int, act: str = "relu") -> None:
        super().__init__()
        self.key_project = nn.Sequential(
            conv_bn_act(in_channels, transform_channels, act=act),
            conv_bn_act(transform_channels, transform_channels, act=act),
        )
        self.query_project = nn.Sequential(
            conv_bn_act(in_channels, transform_channels, act=act),
            conv_bn_act(transform_channels, transform_channels, act=act),
        )
        self.value_project = conv_bn_act(in_channels, transform_channels, act=act)
        self.out_project = conv_bn_act(transform_channels, out_channels, act=act)
        self.transform_channels = transform_channels

    def forward(self, query_feats: torch.Tensor, key_feats: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2).transpose(1, 2)  # (B, Nq, T)
        key = self.key_project(key_feats).flatten(2)  # (B, T, Nk)
        value = self.value_project(key_feats).flatten(2).transpose(1, 2)  # (B, Nk, T)
        similarity = torch.matmul(query, key)
        similarity = (self.transform_channels ** -0.5) * similarity
        similarity = F.softmax(similarity, dim=-1)
        context = torch.matmul(similarity, value)  # (B, Nq, T)
        context = context.transpose(1, 2).reshape(batch, -1, height, width)
        return self.out_project(context)
