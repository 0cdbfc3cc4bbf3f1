"""Bundled MCIBI / MCIBI++ segmentors that load upstream checkpoints unchanged.

- `build_architecture(upstream_config, num_classes=None, variant="upstream-head")`: the network of
  one upstream config; `variant` "training-era" is the forward its checkpoint was trained with
  (it differs for the four HRNet configs of `ERA_STEM_CONFIGS`).
- `build_segmentor(model_id, variant=None)`: the network of a manifest entry (None = the row's
  default variant).
- `load_checkpoint(model, source, *, strict=True, ema=False)`: upstream's checkpoints of every era.
- `deterministic_fill` / `fill_model`: the parity fixtures' weight fill (FILL.md).

`model(images)` takes (N, 3, H, W) normalised images and returns the logits of upstream's
segmentor in TEST mode, (N, num_classes, h, w) at the decoder's own resolution (not resized).
"""

from __future__ import annotations

from torch import nn

from .architectures import (
    ARCHITECTURES,
    DEFAULT_VARIANT,
    ERA_STEM_CONFIGS,
    VARIANTS,
    ArchSpec,
    architecture_spec,
    build_architecture,
    check_variant,
    config_num_classes,
    config_variants,
)
from .checkpoint import TRAINING_ONLY_PREFIXES, LoadReport, load_checkpoint
from .fill import deterministic_fill, fill_model

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "DEFAULT_VARIANT",
    "ERA_STEM_CONFIGS",
    "VARIANTS",
    "LoadReport",
    "TRAINING_ONLY_PREFIXES",
    "architecture_spec",
    "build_architecture",
    "build_segmentor",
    "check_variant",
    "config_num_classes",
    "config_variants",
    "deterministic_fill",
    "fill_model",
    "load_checkpoint",
    "row_variant",
]


def row_variant(entry, variant: str | None = None) -> str:
    """`variant` checked for manifest row `entry`; None gives the row's default variant."""
    if variant is None:
        return entry.default_variant
    return check_variant(variant, entry.id)


def build_segmentor(model_id: str, variant: str | None = None) -> nn.Module:
    """The bundled network of manifest entry `model_id` (id or alias), eval mode, CPU, float32,
    with default (untrained) weights; load the entry's checkpoint with `load_checkpoint`.

    `variant` None takes the row's default (the forward its checkpoint was trained with).
    """
    from ..manifest import load_manifest  # imported lazily: repro.models works without the manifest

    entry = load_manifest().get(model_id)
    model = build_architecture(entry.upstream_config, entry.num_classes, variant=row_variant(entry, variant))
    model.model_id = entry.id
    return model
