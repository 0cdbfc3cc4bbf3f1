"""The arithmetic of a test protocol, without torch: the resize rule, the multi-scale sizes, the
sliding-window grid and the augmentation settings. The plan counts forward passes with these
before anything loads torch (`repro eval --dry-run` and every input error stay fast); inference
(`repro.inference.predictor`) and the test transform (`repro.inference.transforms`) use the same ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


def resize_output_size(height: int, width: int, output_size: Sequence[int], keep_ratio: bool) -> tuple[int, int]:
    """(out_height, out_width) of upstream's test Resize for an image of height x width.

    keep_ratio: scale so the long side fits max(output_size) and the short side min(output_size),
    whichever is tighter, rounding half up by truncation as upstream does. Otherwise the image is
    stretched to the output size, oriented like the input (portrait stays portrait).
    """
    out_a, out_b = int(output_size[0]), int(output_size[1])
    long_out, short_out = max(out_a, out_b), min(out_a, out_b)
    if keep_ratio:
        scale = min(long_out / max(height, width), short_out / min(height, width))
        return int(height * scale + 0.5), int(width * scale + 0.5)
    if height > width:
        return long_out, short_out
    return short_out, long_out


class Window(NamedTuple):
    """One sliding window, half-open: rows y1:y2, columns x1:x2."""

    y1: int
    y2: int
    x1: int
    x2: int


def slide_windows(height: int, width: int, crop_size: Sequence[int], stride: Sequence[int]) -> list[Window]:
    """Upstream's window grid over a (height, width) image; crop_size and stride are (h, w).

    Rows are the outer loop, columns the inner one; the last window of a row/column is moved back
    so that it ends at the image edge, and a side shorter than the crop gets one window of the
    side's full length (no padding).
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    stride_h, stride_w = (int(v) for v in stride)
    if min(crop_h, crop_w, stride_h, stride_w) <= 0:
        raise ValueError(f"crop size {crop_size} and stride {stride} must be positive")
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * stride_h + crop_h, height)
            x2 = min(col * stride_w + crop_w, width)
            windows.append(Window(max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size `F.interpolate(scale_factor=scale)` produces: floor of each side times the scale."""
    return math.floor(float(height) * scale), math.floor(float(width) * scale)


@dataclass(frozen=True)
class TTASettings:
    """The parts of a manifest `Protocol` that inference needs (duck-typed so tests need no manifest)."""

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    probs_before_resize: bool = False
    flip_pairs: tuple[tuple[int, int], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"inference mode must be 'whole' or 'slide', not {self.mode!r}")
        if self.mode == "slide" and (self.crop_size is None or self.stride is None):
            raise ValueError("slide inference needs crop_size and stride")
        if not self.scales:
            raise ValueError("a protocol needs at least one scale")

    @classmethod
    def from_protocol(cls, protocol: Any) -> TTASettings:
        """From a manifest Protocol, a dict with the same keys, or a TTASettings."""
        if isinstance(protocol, TTASettings):
            return protocol
        from repro.manifest import field_of

        get = functools.partial(field_of, protocol)
        crop, stride = get("crop_size"), get("stride")
        return cls(
            mode=get("mode", "whole"),
            crop_size=tuple(int(v) for v in crop) if crop is not None else None,
            stride=tuple(int(v) for v in stride) if stride is not None else None,
            scales=tuple(float(s) for s in get("scales", (1.0,))),
            flip=bool(get("flip", False)),
            probs_before_resize=bool(get("probs_before_resize", False)),
            flip_pairs=tuple((int(a), int(b)) for a, b in (get("flip_pairs") or ())),
        )

    @property
    def num_outputs(self) -> int:
        return len(self.scales) * (2 if self.flip else 1)


class ScaleInputs(NamedTuple):
    """The inputs the network sees for one scale of one image: `count` tensors of one size (the
    windows of the plain and the flipped pass, or the two whole passes; all windows of a grid have
    the same size, `slide_windows` snapping the last one back inside the image)."""

    count: int
    height: int
    width: int

    @property
    def pixels(self) -> int:
        """Pixels of one input."""
        return self.height * self.width


def scale_inputs(height: int, width: int, settings: TTASettings) -> list[ScaleInputs]:
    """Per scale, in protocol order, the network inputs of one transformed image of height x width."""
    flips = 2 if settings.flip else 1
    inputs = []
    for scale in settings.scales:
        h, w = scaled_size(height, width, scale)
        if settings.mode == "slide":
            windows = slide_windows(h, w, settings.crop_size, settings.stride)
            first = windows[0]
            inputs.append(ScaleInputs(len(windows) * flips, first.y2 - first.y1, first.x2 - first.x1))
        else:
            inputs.append(ScaleInputs(flips, h, w))
    return inputs


def largest_input_pixels(inputs: Sequence[ScaleInputs]) -> int:
    """Pixels of the largest single network input: what upstream's loop, one input at a time,
    sends through the network at most in one forward."""
    return max(item.pixels for item in inputs)


def batch_size(input_pixels: int, max_batch: int, pixel_cap: int | None, fits: int | None = None) -> int:
    """Inputs of `input_pixels` each per forward: at most `max_batch`, their pixels together at most
    `pixel_cap` (None: no cap), at most `fits` (the inputs the free memory holds; None: unknown),
    never fewer than one. A network's activations grow with the pixels it holds at once, so the
    cap bounds the peak memory whatever the crop count."""
    size = max(1, max_batch)
    if pixel_cap is not None:
        size = min(size, pixel_cap // max(1, input_pixels))
    if fits is not None:
        size = min(size, fits)
    return max(1, size)


def auto_pixel_cap(device_type: str, largest: int) -> int | None:
    """The pixel cap of `Predictor(batch_pixels="auto")`: on the CPU the image's `largest` single
    input, so that no forward holds more than upstream's one-input loop does at its largest
    (batching buys no speed there); elsewhere none (a GPU batches as far as its memory holds)."""
    return largest if device_type == "cpu" else None
