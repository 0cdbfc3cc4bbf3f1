"""Bundled MCIBI / MCIBI++ segmentors that load upstream checkpoints unchanged.

- `build_architecture(upstream_config, num_classes=None)`: the network of one upstream config.
- `build_segmentor(model_id)`: the network of a manifest entry.
- `load_checkpoint(model, source, *, strict=True)`: upstream's published checkpoints or state dicts.
- `deterministic_fill` / `fill_model`: the parity fixtures' weight fill (FILL.md).

`model(images)` takes (N, 3, H, W) normalised images and returns the logits of upstream's
segmentor in TEST mode, (N, num_classes, h, w) at the decoder's own resolution (not resized).
"""

from __future__ import annotations

from torch import nn

from .architectures import ARCHITECTURES, ArchSpec, architecture_spec, build_architecture, config_num_classes
from .checkpoint import TRAINING_ONLY_PREFIXES, LoadReport, load_checkpoint
from .fill import deterministic_fill, fill_model

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "LoadReport",
    "TRAINING_ONLY_PREFIXES",
    "architecture_spec",
    "build_architecture",
    "build_segmentor",
    "config_num_classes",
    "deterministic_fill",
    "fill_model",
    "load_checkpoint",
]


def build_segmentor(model_id: str) -> nn.Module:
    """The bundled network of manifest entry `model_id` (id or alias), eval mode, CPU, float32,
    with default (untrained) weights; load the entry's checkpoint with `load_checkpoint`."""
    from ..manifest import load_manifest  # imported lazily: repro.models works without the manifest

    entry = load_manifest().get(model_id)
    model = build_architecture(entry.upstream_config, entry.num_classes)
    model.model_id = entry.id
    return model
