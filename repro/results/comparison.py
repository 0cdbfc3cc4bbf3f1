"""The one comparison rule of measured against documented mIoU, shared by `repro report`, the
summary `repro eval` prints and `repro explain` (light: no pandas, no torch).

The documents print mIoU in percent with 2 decimals, so the measured value is rounded to 2
decimals first (the result file's `miou_rounded`, else Python's correctly rounded
`format(miou, ".2f")`), and Δ = rounded measured − documented is computed in decimal arithmetic.
A row reproduces when |Δ| <= tolerance; the edge is exact (Δ = 0.10 passes a 0.1 tolerance,
0.11 fails), free of binary floating-point noise.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_TOLERANCE = 0.1
_CENT = Decimal("0.01")


def as_decimal(value: Any) -> Decimal | None:
    """A number at the documents' precision (2 decimals); None for None, NaN, inf or non-numbers."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    # format() rounds the exact binary value correctly, as the documents' 2-decimal print does.
    try:
        return Decimal(format(number, ".2f"))
    except InvalidOperation:  # inf
        return None


def measured_rounded(result: Any) -> Decimal | None:
    """The measured mIoU of a result at the documents' precision (2 decimals, percent)."""
    if getattr(result, "miou_rounded", None) is not None:
        return as_decimal(result.miou_rounded)
    return as_decimal(getattr(result, "miou", None))


def compare(measured: Decimal, documented: Decimal, tolerance: float) -> tuple[Decimal, bool]:
    """(Δ, within tolerance) in exact decimal arithmetic: |Δ| <= tolerance passes."""
    delta = (measured - documented).quantize(_CENT)
    return delta, abs(delta) <= Decimal(repr(float(tolerance)))


def compare_result(result: Any, documented: Any, tolerance: float = DEFAULT_TOLERANCE) -> tuple[Decimal, bool] | None:
    """`compare` of a result's rounded mIoU with a documented number; None when either is missing."""
    measured, doc = measured_rounded(result), as_decimal(documented)
    if measured is None or doc is None:
        return None
    return compare(measured, doc, tolerance)
