"""Inference: one test-transformed image -> class scores at its original size, under a row's test
protocol (whole or sliding window, scales, flip), as upstream tests.

Modules (imports point down this list):
- `geometry`: the protocol's arithmetic without torch (resize rule, scaled sizes, windows,
  `TTASettings`, the network inputs per scale and how many share a forward); the plan reads it,
  so importing it loads no torch;
- `footprint`: the expected peak memory of an image (per-architecture activation table, no
  torch), for the plan and a GPU Predictor's batch;
- `transforms`: upstream's test transform of an image (resize, normalise, CHW tensor);
- `predictor`: `Predictor` (windows and flips batched within a pixel cap, the OOM fallback, the
  per-image pass heartbeat) and `predict`;
- `flops`: `FlopObserver` and `count_flops`, the FLOPs of one image's forward passes;
- `reference`: `reference_predict`, upstream's loop step by step (the yardstick in tests).

The package names its public API lazily (as `repro.engine` does), so that `repro.inference.geometry`
stays free of torch: `from repro.inference import Predictor` loads `predictor` on first use.
"""

from __future__ import annotations

from repro.lazy import lazy_exports

_HOMES = {
    "geometry": ("ScaleInputs", "TTASettings", "Window", "batch_size", "resize_output_size", "scale_inputs",
                 "scaled_size", "slide_windows"),
    "footprint": ("Footprint", "PeakEstimate", "estimate_peak", "footprint_of"),
    "predictor": ("Predictor", "predict"),
    "flops": ("FlopObserver", "count_flops"),
    "reference": ("reference_predict",),
    "transforms": ("test_transform",),
}
__getattr__, __all__ = lazy_exports(__name__, _HOMES)
