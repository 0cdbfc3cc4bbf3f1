"""Backbones of the MCIBI / MCIBI++ zoos, imported lazily by name.

Each backbone module exposes a builder that takes no required arguments and returns an
`nn.Module` whose `state_dict()` keys equal upstream's `backbone_net.*` keys without the prefix
and whose `forward(x)` returns the stage outputs upstream's backbone returns (a tuple or list).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class BackboneInfo:
    module: str  # module under repro.models.backbones
    builder: str  # builder function in that module
    out_channels: tuple[int, ...]  # channels of the outputs forward() returns, in order


BACKBONES: dict[str, BackboneInfo] = {
    "resnet50": BackboneInfo("resnet", "resnet50", (256, 512, 1024, 2048)),
    "resnet101": BackboneInfo("resnet", "resnet101", (256, 512, 1024, 2048)),
    "resnest101": BackboneInfo("resnest", "resnest101", (256, 512, 1024, 2048)),
    # HRNetV2 returns one map: its four branches resized to stride 4 and concatenated.
    "hrnetv2_w48": BackboneInfo("hrnet", "hrnetv2_w48", (48 + 96 + 192 + 384,)),
    "vit_large": BackboneInfo("vit", "vit_large_patch16_384", (1024, 1024, 1024, 1024)),
    "swin_large": BackboneInfo("swin", "swin_large_patch4_window12_384", (192, 384, 768, 1536)),
}


class BackboneUnavailableError(ImportError):
    """The module implementing a backbone is missing or lacks its builder."""


def build_backbone(name: str, **options) -> nn.Module:
    """Build backbone `name` (a key of BACKBONES); `options` go to its builder."""
    try:
        info = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)})") from None
    module_name = f"{__name__}.{info.module}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise BackboneUnavailableError(f"backbone {name!r} is not available: module {module_name} is missing") from err
    builder = getattr(module, info.builder, None)
    if builder is None:
        raise BackboneUnavailableError(f"backbone {name!r} is not available: {module_name} has no {info.builder}()")
    return builder(**options)
