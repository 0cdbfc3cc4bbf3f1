"""Bundled MCIBI / MCIBI++ segmentors that load upstream checkpoints unchanged.

- `build_architecture(upstream_config, num_classes=None, variant="upstream-head")`: the network of
  one upstream config; `variant` "training-era" is the forward its checkpoint was trained with
  (it differs for the four HRNet configs of `ERA_STEM_CONFIGS`).
- `build_segmentor(model_id, variant=None)`: the network of a manifest entry (None = the row's
  default variant); `load_segmentor(model_id, checkpoint, variant=None)`: built with the
  checkpoint loaded strictly (random initial weights left undrawn), the one way the engine,
  `repro explain` and `repro fetch --from` get a row's network.
- `load_checkpoint(model, source, *, strict=True, ema=False)`: upstream's checkpoints of every era.
- `deterministic_fill` / `fill_model`: the parity fixtures' weight fill (FILL.md).

`model(images)` takes (N, 3, H, W) normalised images and returns the logits of upstream's
segmentor in TEST mode, (N, num_classes, h, w) at the decoder's own resolution (not resized).
"""

from __future__ import annotations

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
from .segmentor import build_segmentor, load_segmentor, random_init_skipped, row_variant

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
    "load_segmentor",
    "random_init_skipped",
    "row_variant",
]
