"""Vision Transformer backbone of the MCIBI ViT-Large models (`jx_vit_large_p16_384` variant).

Behaviour follows sssegmentation's `VisionTransformer` as the `mcibi_deeplabv3_vitlarge_*` configs
build it (ViT-L/16: embed dim 1024, 24 pre-norm blocks, 16 heads, MLP ratio 4, LayerNorm eps
1e-6, exact GELU, class token, no final norm, no patch norm), with upstream's state-dict names:

- the input is zero-padded at the bottom/right to a multiple of 16 ("corner" padding), so an
  HxW image gives a ceil(H/16) x ceil(W/16) token grid; nothing is cropped afterwards;
- the position embedding is stored for the 512x512 training size (32x32 grid + class token) and,
  whenever the token count differs from it, its grid part is resized bilinearly
  (align_corners=False) to the current grid. As upstream, the check is on the token count
  only: a grid with exactly 1024 tokens but not 32x32 (e.g. 16x64) gets the stored embedding
  unresized;
- `forward` returns a tuple of four (N, 1024, H/16, W/16) maps, the token outputs (class token
  dropped) of blocks 9, 14, 19 and 23.

The MCIBI segmentor around it has two more ViT-only pieces, which upstream keeps at the top
level of the segmentor (not under `backbone_net.`): `norm_layers`, one LayerNorm(1024, eps 1e-6)
per backbone output applied over channels before the head (`build_output_norms` /
`apply_output_norms` here), and three training-only auxiliary decoders (`auxiliary_decoder.*`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VisionTransformer",
    "vit_large_patch16_384",
    "build_output_norms",
    "apply_output_norms",
]


class PatchEmbedding(nn.Module):
    """Non-overlapping patch projection; pads the bottom/right edge up to a multiple of the patch."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        height, width = images.shape[-2:]
        pad_h = -height % self.patch_size
        pad_w = -width % self.patch_size
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        feats = self.projection(images)
        grid = (feats.shape[2], feats.shape[3])
        return feats.flatten(2).transpose(1, 2), grid


class SelfAttention(nn.Module):
    """Residual multi-head self-attention; the inner module keeps upstream's `attn.attn.*` names."""

    def __init__(self, embed_dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, bias=qkv_bias, batch_first=True)

    def forward(self, normed: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        # need_weights=False lets torch use its fused / SDPA kernels.
        out = self.attn(normed, normed, normed, need_weights=False)[0]
        return residual + out


class FeedForward(nn.Module):
    """Residual two-layer MLP; `layers.0.0` / `layers.1` are upstream's parameter names."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU()),
            nn.Linear(hidden_dim, embed_dim),
        )

    def forward(self, normed: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return residual + self.layers(normed)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int, norm_eps: float, qkv_bias: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.attn = SelfAttention(embed_dim, num_heads, qkv_bias)
        self.ln2 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.ffn = FeedForward(embed_dim, mlp_ratio * embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.attn(self.ln1(tokens), tokens)
        return self.ffn(self.ln2(tokens), tokens)


class VisionTransformer(nn.Module):
    """Plain ViT with a class token, returning the patch tokens of selected blocks as NCHW maps."""

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = (512, 512),
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        out_indices: Sequence[int] = (9, 14, 19, 23),
        interpolate_mode: str = "bilinear",
    ):
        super().__init__()
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        out_indices = tuple(depth + i if i < 0 else i for i in out_indices)
        if any(not 0 <= i < depth for i in out_indices):
            raise ValueError(f"out_indices {out_indices} must lie in [0, {depth})")
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.out_indices = out_indices
        self.interpolate_mode = interpolate_mode
        # Grid the stored position embedding was trained for (upstream: img_size // patch_size).
        self.pos_grid = (img_size[0] // patch_size, img_size[1] // patch_size)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1] + 1, embed_dim))
        self.patch_embed = PatchEmbedding(in_channels, embed_dim, patch_size)
        self.layers = nn.ModuleList(
            EncoderBlock(embed_dim, num_heads, mlp_ratio, norm_eps, qkv_bias) for _ in range(depth)
        )

    def adapt_to_checkpoint(self, state_dict: Mapping[str, torch.Tensor], prefix: str) -> Callable[[], None] | None:
        """Take the position-embedding grid of a checkpoint (called by `load_checkpoint`).

        The grid is the training config's img_size // 16: 32x32 + class token = 1025 tokens for
        upstream's current 512, 29x29 + 1 = 842 for the 473 of the 2021 COCO-Stuff-10k config.
        Upstream, built with the checkpoint's img_size, resizes from that grid in every forward
        whose token count differs (the 2021 code, b493b419, and today's, whose 0e362f3a
        "refactor vit.forward" only renamed variables), exactly as `position_embedding` does
        once `pos_grid` is the checkpoint's. Non-square or other-width embeddings are left to
        the loader's shape error. Returns how to undo it, for a checkpoint refused afterwards.
        """
        stored = state_dict.get(prefix + "pos_embed")
        if stored is None or stored.dim() != 3 or tuple(stored.shape) == tuple(self.pos_embed.shape):
            return
        side = math.isqrt(max(stored.shape[1] - 1, 0))
        if stored.shape[0] != 1 or stored.shape[2] != self.embed_dim or side < 1 or side * side != stored.shape[1] - 1:
            return
        old, old_grid = self.pos_embed, self.pos_grid
        self.pos_grid = (side, side)
        self.pos_embed = nn.Parameter(old.new_zeros(tuple(stored.shape)), requires_grad=old.requires_grad)

        def undo() -> None:  # the checkpoint was refused after all: back to the built grid
            self.pos_embed, self.pos_grid = old, old_grid

        return undo

    def position_embedding(self, grid: tuple[int, int], num_tokens: int) -> torch.Tensor:
        """The (1, 1 + h*w, C) embedding for a token grid, resized only when the count differs."""
        if num_tokens == self.pos_embed.shape[1]:
            return self.pos_embed
        cls_part = self.pos_embed[:, :1]
        grid_part = self.pos_embed[:, 1:].reshape(1, *self.pos_grid, self.embed_dim).permute(0, 3, 1, 2)
        grid_part = F.interpolate(grid_part, size=grid, mode=self.interpolate_mode, align_corners=False)
        grid_part = grid_part.flatten(2).transpose(1, 2)
        return torch.cat((cls_part, grid_part), dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = images.shape[0]
        tokens, grid = self.patch_embed(images)
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(grid, tokens.shape[1])

        outputs = []
        for index, block in enumerate(self.layers):
            tokens = block(tokens)
            if index in self.out_indices:
                patch_tokens = tokens[:, 1:]
                fmap = patch_tokens.reshape(batch, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
                outputs.append(fmap)
        return tuple(outputs)


def vit_large_patch16_384(**kwargs) -> VisionTransformer:
    """ViT-L/16 as the MCIBI configs build it (timm's `jx_vit_large_p16_384`, 512x512 pos grid).

    Keyword arguments override the defaults of `VisionTransformer` (e.g. `img_size`).
    """
    config = dict(
        img_size=(512, 512),
        patch_size=16,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        mlp_ratio=4,
        qkv_bias=True,
        norm_eps=1e-6,
        out_indices=(9, 14, 19, 23),
        interpolate_mode="bilinear",
    )
    config.update(kwargs)
    return VisionTransformer(**config)


def build_output_norms(channels: Sequence[int] = (1024, 1024, 1024, 1024), eps: float = 1e-6) -> nn.ModuleList:
    """The MCIBI-ViT segmentor's `norm_layers`: one LayerNorm per backbone output.

    The segmentor must hold it as `self.norm_layers` (state-dict keys `norm_layers.<i>.weight/bias`).
    """
    return nn.ModuleList(nn.LayerNorm(c, eps=eps) for c in channels)


def apply_output_norms(features: Sequence[torch.Tensor], norm_layers: nn.ModuleList) -> list[torch.Tensor]:
    """LayerNorm each (N, C, H, W) map over its channels, pairing outputs and layers in order."""
    if len(features) != len(norm_layers):
        raise ValueError(f"{len(features)} backbone outputs but {len(norm_layers)} norm layers")
    normed = []
    for fmap, norm in zip(features, norm_layers):
        # LayerNorm normalises the last axis, so move channels there and back.
        normed.append(norm(fmap.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous())
    return normed
