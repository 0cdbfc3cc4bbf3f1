"""Inference: one test-transformed image -> class scores at its original size, under a row's test
protocol (whole or sliding window, scales, flip), as upstream tests.

Modules (imports point down this list):
- `geometry`: the protocol's arithmetic without torch (resize rule, scaled sizes, windows,
  `TTASettings`); the plan reads it, so importing it loads no torch;
- `transforms`: upstream's test transform of an image (resize, normalise, CHW tensor);
- `predictor`: `Predictor` (windows and flips batched, the OOM fallback) and `predict`;
- `flops`: `FlopObserver` and `count_flops`, the FLOPs of one image's forward passes;
- `reference`: `reference_predict`, upstream's loop step by step (the yardstick in tests).

The package names its public API lazily (as `repro.engine` does), so that `repro.inference.geometry`
stays free of torch: `from repro.inference import Predictor` loads `predictor` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "geometry": ("TTASettings", "Window", "resize_output_size", "scaled_size", "slide_windows"),
    "predictor": ("Predictor", "predict"),
    "flops": ("FlopObserver", "count_flops"),
    "reference": ("reference_predict",),
    "transforms": ("test_transform",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'repro.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(f"repro.inference.{module}"), name)
