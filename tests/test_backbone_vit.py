"""ViT-Large/16 backbone: upstream state-dict names, parity with the upstream fixture, and the
padding / position-embedding rules checked against independent computations on a tiny ViT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.models.backbones.vit import (
    VisionTransformer,
    apply_output_norms,
    build_output_norms,
    vit_large_patch16_384,
)
from repro.models.fill import fill_tensor

FIXTURES = Path(__file__).parent / "fixtures"
PARITY_CONFIG = "mcibi_deeplabv3_vitlarge_ade20k"


def tiny_vit(**overrides) -> VisionTransformer:
    config = dict(img_size=(64, 48), patch_size=8, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2,
                  out_indices=(1, 3))
    config.update(overrides)
    torch.manual_seed(0)
    model = VisionTransformer(**config).eval()
    with torch.no_grad():  # non-zero class token / position embedding so that they matter
        model.cls_token.normal_()
        model.pos_embed.normal_()
    return model


def build_large_on_meta() -> nn.Module:
    # No default initialisation of ~300M floats: the weights are overwritten anyway.
    with torch.device("meta"):
        model = vit_large_patch16_384()
    return model.to_empty(device="cpu").eval()


def test_vit_large_state_dict_matches_upstream_names_and_shapes():
    expected = json.loads((FIXTURES / "backbones" / "vit_large_backbone_keys.json").read_text())["keys"]
    expected = [(key.removeprefix("backbone_net."), tuple(shape)) for key, shape in expected]
    model = build_large_on_meta()
    ours = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
    assert ours == expected


def bilinear_resize_reference(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize (align_corners=False, no antialias) of (H, W, C), written from the formula."""
    in_h, in_w = grid.shape[:2]

    def taps(out_size: int, in_size: int):
        scale = in_size / out_size
        src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, src - lo

    y0, y1, wy = taps(out_h, in_h)
    x0, x1, wx = taps(out_w, in_w)
    top = grid[y0][:, x0] * (1 - wx)[None, :, None] + grid[y0][:, x1] * wx[None, :, None]
    bottom = grid[y1][:, x0] * (1 - wx)[None, :, None] + grid[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


class ReferenceViT(nn.Module):
    """The same network from stock torch parts, for an independent forward pass."""

    def __init__(self, ours: VisionTransformer, num_heads: int, norm_eps: float):
        super().__init__()
        dim = ours.embed_dim
        self.ours = ours
        self.blocks = nn.ModuleList()
        for block in ours.layers:
            ref = nn.TransformerEncoderLayer(
                dim, num_heads, dim_feedforward=block.ffn.layers[0][0].out_features, dropout=0.0,
                activation="gelu", layer_norm_eps=norm_eps, batch_first=True, norm_first=True,
            )
            ref.self_attn.load_state_dict(block.attn.attn.state_dict())
            ref.linear1.load_state_dict(block.ffn.layers[0][0].state_dict())
            ref.linear2.load_state_dict(block.ffn.layers[1].state_dict())
            ref.norm1.load_state_dict(block.ln1.state_dict())
            ref.norm2.load_state_dict(block.ln2.state_dict())
            self.blocks.append(ref.eval())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        ours, p = self.ours, self.ours.patch_size
        n, _, h, w = images.shape
        gh, gw = math.ceil(h / p), math.ceil(w / p)
        padded = images.new_zeros(n, images.shape[1], gh * p, gw * p)
        padded[:, :, :h, :w] = images
        # A patch projection is a matrix product over unfolded patches.
        patches = F.unfold(padded, kernel_size=p, stride=p).transpose(1, 2)
        weight = ours.patch_embed.projection.weight.flatten(1)
        tokens = patches @ weight.T + ours.patch_embed.projection.bias
        pos = ours.pos_embed.detach()
        if gh * gw + 1 != pos.shape[1]:
            stored = pos[0, 1:].reshape(*ours.pos_grid, -1).double().numpy()
            resized = torch.from_numpy(bilinear_resize_reference(stored, gh, gw)).float().reshape(1, gh * gw, -1)
            pos = torch.cat((pos[:, :1], resized), dim=1)
        tokens = torch.cat((ours.cls_token.expand(n, -1, -1), tokens), dim=1) + pos
        outs = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in ours.out_indices:
                outs.append(tokens[:, 1:].transpose(1, 2).reshape(n, -1, gh, gw))
        return outs


@pytest.mark.parametrize("height, width", [(64, 48), (37, 29), (8, 8), (70, 100)])
def test_tiny_vit_matches_reference_built_from_torch_layers(height, width):
    model = tiny_vit()
    reference = ReferenceViT(model, num_heads=4, norm_eps=1e-6)
    images = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    with torch.no_grad():
        ours = model(images)
        expected = reference(images)
    assert len(ours) == 2
    for got, want in zip(ours, expected):
        assert got.shape == (2, 32, math.ceil(height / 8), math.ceil(width / 8))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_padding_is_zeros_at_bottom_right():
    model = tiny_vit()
    images = torch.randn(1, 3, 37, 29)
    padded = torch.zeros(1, 3, 40, 32)
    padded[:, :, :37, :29] = images
    with torch.no_grad():
        for got, want in zip(model(images), model(padded)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_position_embedding_resized_only_when_token_count_differs():
    model = tiny_vit()  # stored grid 8x6 = 48 tokens
    stored = model.pos_embed.detach()
    # Same token count, other shape (upstream checks the count only): used as stored.
    assert torch.equal(model.position_embedding((4, 12), 49), stored)
    resized = model.position_embedding((3, 5), 16).detach()
    assert resized.shape == (1, 16, 32)
    assert torch.equal(resized[:, 0], stored[:, 0])
    expected = bilinear_resize_reference(stored[0, 1:].reshape(8, 6, 32).double().numpy(), 3, 5)
    np.testing.assert_allclose(resized[0, 1:].numpy(), expected.reshape(15, 32), rtol=1e-5, atol=1e-6)


def test_factory_defaults_and_overrides():
    with torch.device("meta"):
        default = vit_large_patch16_384()
        smaller_grid = vit_large_patch16_384(img_size=(384, 384), out_indices=(-1,))
    assert default.pos_embed.shape == (1, 32 * 32 + 1, 1024)
    assert default.out_indices == (9, 14, 19, 23)
    assert len(default.layers) == 24
    assert default.layers[0].attn.attn.num_heads == 16
    assert default.layers[0].ln1.eps == 1e-6
    assert smaller_grid.pos_embed.shape == (1, 24 * 24 + 1, 1024)
    assert smaller_grid.out_indices == (23,)
    with pytest.raises(ValueError):
        vit_large_patch16_384(out_indices=(24,))


def test_output_norms_normalise_each_map_over_channels():
    norms = build_output_norms((6, 6), eps=1e-6)
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.1, 0.1)
    features = [torch.randn(2, 6, 3, 4) * 3 + 1 for _ in range(2)]
    with torch.no_grad():
        normed = apply_output_norms(features, norms)
    for fmap, norm, got in zip(features, norms, normed):
        mean = fmap.mean(dim=1, keepdim=True)
        var = fmap.var(dim=1, unbiased=False, keepdim=True)
        want = (fmap - mean) / torch.sqrt(var + 1e-6) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert [k for k in nn.ModuleDict({"norm_layers": norms}).state_dict()] == [
        "norm_layers.0.weight", "norm_layers.0.bias", "norm_layers.1.weight", "norm_layers.1.bias"]
    with pytest.raises(ValueError):
        apply_output_norms(features[:1], norms)


def test_tiny_vit_runs_under_cpu_autocast():
    model = tiny_vit()
    images = torch.randn(1, 3, 37, 29)
    with torch.no_grad():
        full = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(images)
    for a, b in zip(full, mixed):
        assert b.shape == a.shape
        assert torch.isfinite(b).all()
        assert (b.float() - a).abs().max() < 0.1 * a.abs().max()


def test_vit_large_matches_upstream_fixture_statistics():
    """Deterministic fill (FILL.md) + fixture input: per-channel mean/std of the four outputs."""
    fixture = np.load(FIXTURES / "parity" / f"{PARITY_CONFIG}.npz")
    model = build_large_on_meta()
    with torch.no_grad():
        # Fill each parameter in place (same values as deterministic_fill, without a second copy).
        for name, param in model.named_parameters():
            param.copy_(fill_tensor("backbone_net." + name, tuple(param.shape)))
        outputs = model(torch.from_numpy(fixture["input"]))
    assert len(outputs) == 4
    for index, out in enumerate(outputs):
        assert out.shape == (1, 1024, 7, 9)  # 97x129 padded to 112x144, stride 16
        out = out.double()
        mean = out.mean(dim=(0, 2, 3)).numpy()
        std = out.std(dim=(0, 2, 3)).numpy()
        ref_mean = fixture[f"backbone_net.out{index}.channel_mean"]
        ref_std = fixture[f"backbone_net.out{index}.channel_std"]
        assert np.abs(mean - ref_mean).max() <= 1e-4 * np.abs(ref_mean).max()
        assert np.abs(std - ref_std).max() <= 1e-4 * np.abs(ref_std).max()


# ---- the position-embedding grid of the checkpoint (img_size 473 in 2021, 512 today) ----

def test_checkpoint_grid_is_taken_and_forwards_as_a_model_built_for_it():
    # Upstream's 2021 COCO-Stuff-10k config built img_size 473 (29x29 grid + class token = 842
    # tokens); a model built for 512 that adapts to such a checkpoint must forward exactly as a
    # model built with the checkpoint's img_size (what upstream ran), resized or not.
    from repro.models import load_checkpoint

    trained = tiny_vit(img_size=(58, 58))  # 58 // 8 = 7: a 7x7 grid, 50 tokens
    adapted = tiny_vit(img_size=(64, 64))  # 8x8 grid, 65 tokens
    assert tuple(adapted.pos_embed.shape) == (1, 65, 32)
    load_checkpoint(adapted, trained.state_dict())
    assert adapted.pos_grid == (7, 7) and tuple(adapted.pos_embed.shape) == (1, 50, 32)
    for size in ((56, 56), (75, 113), (64, 64)):  # the 7x7 grid itself (no resize), odd, the old 8x8
        images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(size[1]))
        with torch.no_grad():
            for ours, reference in zip(adapted(images), trained(images)):
                assert torch.equal(ours, reference), size


@pytest.mark.parametrize("tokens", [842, 1025], ids=["2021-img473", "current-img512"])
def test_vit_large_config_loads_either_position_embedding(tokens):
    from repro.models import build_architecture, load_checkpoint

    with torch.device("meta"):  # shapes only: no 300M-parameter fill
        model = build_architecture("mcibi_deeplabv3_vitlarge_cocostuff10k")
        state = build_architecture("mcibi_deeplabv3_vitlarge_cocostuff10k").state_dict()
    state["backbone_net.pos_embed"] = torch.zeros(1, tokens, 1024, device="meta")
    load_checkpoint(model, {"model": state})
    side = math.isqrt(tokens - 1)
    assert model.backbone_net.pos_grid == (side, side)
    assert tuple(model.backbone_net.pos_embed.shape) == (1, tokens, 1024)


def test_a_position_embedding_of_no_square_grid_is_a_shape_error():
    from repro.errors import CheckpointError
    from repro.models import load_checkpoint

    model = tiny_vit(img_size=(64, 64))
    state = model.state_dict()
    state["pos_embed"] = torch.zeros(1, 61, 32)  # 60 grid tokens: no square grid
    with pytest.raises(CheckpointError, match=r"pos_embed is \(1, 61, 32\) in the checkpoint but \(1, 65, 32\)"):
        load_checkpoint(model, state)


def test_a_refused_checkpoint_leaves_the_position_embedding_as_built():
    from repro.errors import CheckpointError
    from repro.models import load_checkpoint

    model = tiny_vit(img_size=(64, 64))
    built_embed, built_grid = model.pos_embed, model.pos_grid
    state = tiny_vit(img_size=(58, 58)).state_dict()  # a 7x7 grid: adapted before the key check
    del state["cls_token"]  # ... and then refused
    with pytest.raises(CheckpointError, match="lacks 1 of"):
        load_checkpoint(model, state)
    assert model.pos_embed is built_embed and model.pos_grid == built_grid
