"""A batch gives each image the logits it gets alone, for every backbone family and head family,
at odd input sizes, in float64 (where rounding cannot hide a real cross-image leak: bar 1e-9)."""

from __future__ import annotations

import pytest
import torch

from repro.models import build_architecture, fill_model

SIZES = [(43, 67), (75, 113), (97, 161)]  # odd on both sides, different aspect ratios and token grids
BAR = 1e-9

# One config per backbone; between them every head family: MCIBI ASPP (LeakyReLU), MCIBI++
# without context, with PPM (gathering with the pixel logits), with ASPP and half-resolution
# memory attention, UPerNet + PPM, the MCIBI ViT head, Swin UPerNet with PPM and 3x3 decoders.
FAMILIES = {
    "resnet50-ppm": ("mcibiplusplus_ppm_resnet50os8_ade20k", "upstream-head"),
    "resnet50-fcn": ("mcibiplusplus_resnet50os8_lip", "upstream-head"),
    "resnet101-mcibi": ("mcibi_deeplabv3_resnet101os8_lip", "upstream-head"),
    "resnest101-upernet": ("mcibiplusplus_upernet_resnest101os8_lip", "upstream-head"),
    "hrnet-aspp": ("mcibiplusplus_aspp_hrnetv2w48_lip", "training-era"),
    "vit-large": ("mcibi_deeplabv3_vitlarge_cocostuff10k", "upstream-head"),
    "swin-large": ("mcibiplusplus_upernet_swinlarge_vspw", "upstream-head"),
}
# Float64 forwards of dilated (output stride 8) CNNs take 10-30 s of CPU at 75x113 and more at
# 97x161: the default run checks every CNN family at the small first size, the slow run adds the
# others and ViT-L / Swin-L (200-300M parameters).
LARGE = {"vit-large", "swin-large"}


def family_params() -> list:
    params = []
    for name, (config, variant) in FAMILIES.items():
        for index, size in enumerate(SIZES):
            slow = name in LARGE or index > 0
            params.append(pytest.param(config, variant, size, id=f"{name}-{size[0]}x{size[1]}",
                                       marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize(("config", "variant", "size"), family_params())
def test_batch_equals_single_image_forwards(config: str, variant: str, size: tuple[int, int]):
    model = fill_model(build_architecture(config, variant=variant)).double()
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        batched = model(images)
        singles = torch.cat([model(images[i : i + 1]) for i in range(2)])
    assert batched.shape == singles.shape and batched.shape[0] == 2
    assert not torch.equal(batched[0], batched[1])  # two different images, two different outputs
    relative = float((batched - singles).abs().max() / singles.abs().max())
    assert relative <= BAR, f"{config} at {size[0]}x{size[1]}: batch of 2 differs from single by {relative:.2e}"
