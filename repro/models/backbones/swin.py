"""Swin Transformer backbone, as sssegmentation builds it for the MCIBI++ UPerNet Swin-L models.

Behaviour follows upstream's `SwinTransformer` (an mmseg-style port of Swin): a 4x4 patch
embedding with right/bottom ("corner") zero padding to a multiple of the patch size, four stages
of (shifted-)window attention blocks with relative position bias, patch merging that pads odd
sizes and concatenates each 2x2 neighbourhood channel-major (the `nn.Unfold` order), and one
LayerNorm per returned stage. Window attention pads the token grid with zeros (after `norm1`) to
a multiple of the window; padded tokens are attended to, as upstream does, and shifted blocks
use upstream's region mask (-100 between regions, over the padded grid).

Module and parameter names equal upstream's state-dict keys (without the `backbone_net.`
prefix). Dropout rates are 0 in every config we build, so only stochastic depth (training only)
is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Upstream's additive attention mask between tokens of different shifted regions.
SHIFT_MASK_VALUE = -100.0


def _drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (identity in eval or at rate 0)."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
    keep.bernoulli_(keep_prob)
    return x * keep / keep_prob


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) int64 index into the (2w-1)^2 bias table, N = w*w, row-major window positions."""
    rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + (window_size - 1)
    d_col = cols[:, None] - cols[None, :] + (window_size - 1)
    return d_row * (2 * window_size - 1) + d_col


def _windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w*w, C), windows in batch-major, row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def _unwindows(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `_windows`: (B * nW, w*w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def shifted_window_mask(height: int, width: int, window_size: int, shift: int, device: torch.device,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(nW, N, N) additive mask for shifted windows on a padded (height, width) grid.

    The grid is cut into 3x3 regions at -window and -shift from each far edge; tokens of
    different regions may not attend to each other after the cyclic shift.
    """

    def region_ids(length: int) -> torch.Tensor:
        ids = torch.zeros(length, dtype=torch.long, device=device)
        ids[max(length - window_size, 0) :] = 1
        ids[length - shift :] = 2
        return ids

    region = region_ids(height)[:, None] * 3 + region_ids(width)[None, :]
    region_windows = _windows(region[None, :, :, None], window_size).squeeze(-1)  # (nW, N)
    differs = region_windows[:, :, None] != region_windows[:, None, :]
    mask = torch.zeros(differs.shape, dtype=dtype, device=device)
    return mask.masked_fill_(differs, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True, qk_scale: float | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * nW, N, C); shift_mask: (nW, N, N) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)[None]  # (1, heads, N, N)
        if shift_mask is not None:
            num_windows = shift_mask.shape[0]
            bias = bias + shift_mask[:, None]  # (nW, heads, N, N)
            if bw != num_windows:  # windows are batch-major: repeat the per-window bias per image
                bias = bias.repeat(bw // num_windows, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class ShiftWindowMSA(nn.Module):
    """Pads the token grid to whole windows, optionally shifts it, attends, and undoes both."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.w_msa = WindowAttention(dim, num_heads, window_size, qkv_bias, qk_scale)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], shift_mask: torch.Tensor | None) -> torch.Tensor:
        b, length, c = x.shape
        h, w = hw
        ws = self.window_size
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, (-w) % ws, 0, (-h) % ws))
        hp, wp = x.shape[1], x.shape[2]
        if self.shift_size:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        x = _unwindows(self.w_msa(_windows(x, ws), shift_mask if self.shift_size else None), ws, hp, wp)
        if self.shift_size:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        return x[:, :h, :w, :].reshape(b, length, c)


class FeedForward(nn.Module):
    """Two-layer GELU MLP; `layers.0.0` / `layers.1` keep upstream's key names."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU()), nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SwinBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + ffn(norm2(x)), each branch with drop path."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: bool, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: float | None, drop_path: float):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftWindowMSA(dim, num_heads, window_size, window_size // 2 if shift else 0, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(mlp_ratio * dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int], shift_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + _drop_path(self.attn(self.norm1(x), hw, shift_mask), self.drop_path, self.training)
        return x + _drop_path(self.ffn(self.norm2(x)), self.drop_path, self.training)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; pads right/bottom to a multiple of the patch size."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_size
        x = F.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class PatchMerging(nn.Module):
    """2x2 merge: pad to even, gather each neighbourhood channel-major (c, dy, dx), norm, project."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = hw
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        # (B, h2, dy, w2, dx, C) -> (B, h2, w2, C, dy, dx): the order nn.Unfold gives upstream
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), (h2, w2)


class SwinStage(nn.Module):
    """Blocks alternating plain / shifted windows, then an optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: float | None, drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, i % 2 == 1, mlp_ratio, qkv_bias, qk_scale, drop_paths[i]) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, 2 * dim) if downsample else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
        """Returns (input of the next stage, its size, this stage's output before merging)."""
        ws = self.window_size
        shift_mask = None
        if len(self.blocks) > 1:  # one mask serves every shifted block of the stage
            hp, wp = hw[0] + (-hw[0]) % ws, hw[1] + (-hw[1]) % ws
            shift_mask = shifted_window_mask(hp, wp, ws, ws // 2, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, hw, shift_mask)
        if self.downsample is None:
            return x, hw, x
        merged, merged_hw = self.downsample(x, hw)
        return merged, merged_hw, x


class SwinTransformer(nn.Module):
    """Swin backbone returning a list of (B, C_i, H_i, W_i) maps for `out_indices` (strides 4, 8, 16, 32)."""

    def __init__(self, *, in_channels: int = 3, embed_dims: int = 96, patch_size: int = 4, window_size: int = 7,
                 mlp_ratio: float = 4.0, depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 out_indices: Sequence[int] = (0, 1, 2, 3), qkv_bias: bool = True, qk_scale: float | None = None,
                 drop_path_rate: float = 0.1, pretrain_img_size: int = 224):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        if not set(out_indices) <= set(range(len(depths))):
            raise ValueError(f"out_indices {tuple(out_indices)} must lie in 0..{len(depths) - 1}")
        # Recorded only: without an absolute position embedding it does not change the network.
        self.pretrain_img_size = pretrain_img_size
        self.out_indices = tuple(out_indices)
        self.num_features = [embed_dims * 2**i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        # Stochastic depth grows linearly over all blocks of all stages (plain floats: also builds on "meta").
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            first = sum(depths[:i])
            self.stages.append(SwinStage(self.num_features[i], depth, heads, window_size, mlp_ratio, qkv_bias, qk_scale,
                                         rates[first:first + depth], downsample=i < len(depths) - 1))
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, hw = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, next_hw, stage_out = stage(x, hw)
            if i in self.out_indices:
                stage_out = getattr(self, f"norm{i}")(stage_out)
                outs.append(stage_out.view(-1, hw[0], hw[1], self.num_features[i]).permute(0, 3, 1, 2).contiguous())
            hw = next_hw
        return outs


SWIN_LARGE_PATCH4_WINDOW12_384 = dict(
    in_channels=3, embed_dims=192, patch_size=4, window_size=12, mlp_ratio=4.0, depths=(2, 2, 18, 2),
    num_heads=(6, 12, 24, 48), out_indices=(0, 1, 2, 3), qkv_bias=True, qk_scale=None, drop_path_rate=0.3,
    pretrain_img_size=384,
)


def swin_large_patch4_window12_384(**kwargs) -> SwinTransformer:
    """Swin-L (embed 192, depths 2/2/18/2, heads 6/12/24/48, window 12) as the MCIBI++ configs build it."""
    return SwinTransformer(**{**SWIN_LARGE_PATCH4_WINDOW12_384, **kwargs})
