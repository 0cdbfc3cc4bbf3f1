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
