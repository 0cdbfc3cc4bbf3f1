"""Precision brackets: one row measured in several comparable arithmetics (fp32, tf32, tf32-all).

The report compares the documented number with the result whose arithmetic matches how that
number was most likely computed (the manifest's `documented_conditions`: TF32 convolutions
"yes"/"likely" -> tf32, and matmuls too -> tf32-all; anything else, "unknown" included -> fp32)
and shows the other precision(s) beside it with the spread, so a reader sees at once whether the
arithmetic moves the number by more than the tolerance. A precision that is not comparable
(bf16, fp16 autocast) or that this version does not know is never compared, and is named.

Light at import (no torch, no pandas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from repro.numerics import COMPARABLE, PRECISIONS

LIKELY = ("yes", "likely")  # evidence strong enough to pick TF32 for the comparison


def comparable(precision: str | None) -> bool:
    return (precision or "fp32") in COMPARABLE


def precision_note(precision: str | None) -> str | None:
    """Why a result's precision keeps it from the comparison (None when it is comparable)."""
    name = precision or "fp32"
    if name in COMPARABLE:
        return None
    if name in PRECISIONS:
        return f"{name}, not compared (autocast: not the documents' arithmetic)"
    return f"precision '{name}' is unknown to this version of repro, not compared"


def conditions_for(entry: Any, protocol: str) -> Any:
    """The conditions of the number a row's protocol is compared with: the document's, else
    (a blank cell upstream filled) upstream_now's; None when the manifest has none."""
    found = (getattr(entry, "documented_conditions", None) or {}).get(protocol)
    now = getattr(entry, "upstream_now", None)
    if found is None and now is not None:
        found = (getattr(now, "conditions", None) or {}).get(protocol)
    return found


def matching_precision(conditions: Any) -> str:
    """The comparable precision closest to how a documented number was computed."""
    if conditions is None or getattr(conditions, "tf32_conv", "unknown") not in LIKELY:
        return "fp32"
    return "tf32-all" if getattr(conditions, "tf32_matmul", "unknown") in LIKELY else "tf32"


def preferred_precision(entry: Any, protocol: str) -> str:
    """The arithmetic a row's result should be measured in to compare with its number."""
    return matching_precision(conditions_for(entry, protocol))


def choose_precision(available: Iterable[str], conditions: Any) -> tuple[str, str] | None:
    """(the precision to compare, why) among the comparable `available` ones; None if none is."""
    present = [p for p in COMPARABLE if p in set(available)]
    if not present:
        return None
    wanted = matching_precision(conditions)
    if wanted in present:
        why = "as documented" if wanted != "fp32" or conditions is not None else "conditions unknown: fp32"
        return wanted, why
    return present[0], f"no {wanted} result"


@dataclass(frozen=True)
class Bracket:
    """A row's comparable numbers: the one compared (`chosen`) and the others beside it."""

    chosen: str
    why: str
    value: Decimal
    others: tuple[tuple[str, Decimal], ...]  # (precision, rounded mIoU), COMPARABLE order
    tolerance: Decimal

    @property
    def spread(self) -> Decimal:
        values = [self.value, *(v for _, v in self.others)]
        return max(values) - min(values)

    @property
    def exceeds_tolerance(self) -> bool:
        return self.spread > self.tolerance

    def text(self) -> str:
        """'tf32 80.12 (+0.07); spread 0.07 <= 0.10' -- the other arithmetic(s), for a note or a cell."""
        others = ", ".join(f"{p} {v:.2f} ({v - self.value:+.2f})" for p, v in self.others)
        sign = ">" if self.exceeds_tolerance else "<="
        return f"{others}; spread {self.spread:.2f} {sign} {self.tolerance}"


def bracket(numbers: Mapping[str, Any], conditions: Any, tolerance: Any) -> Bracket | None:
    """The bracket of a row's rounded mIoU per precision; None unless two or more are comparable."""
    values = {p: Decimal(str(v)) for p, v in numbers.items() if comparable(p) and v is not None}
    choice = choose_precision(values, conditions)
    if choice is None or len(values) < 2:
        return None
    chosen, why = choice
    others = tuple((p, values[p]) for p in COMPARABLE if p in values and p != chosen)
    return Bracket(chosen, why, values[chosen], others, Decimal(str(tolerance)))


def report_bracket(entry: Any, protocol: str, current: Any, candidates: list[Any],
                   tolerance: Any) -> tuple[Any, Bracket | None]:
    """(the result a report row compares, its bracket) among a row's result files.

    The bracket holds the complete results of the current one's forward and split, the newest of
    each comparable precision; with two or more, the row compares the one matching the
    documented number's conditions. Otherwise `current` stays, without a bracket.
    """
    from repro.results.comparison import measured_rounded
    from repro.results.current import newest, result_variant

    if not comparable(getattr(current, "precision", "fp32")) or current.status != "complete":
        return current, None
    same = [r for r in candidates if r.status == "complete" and comparable(r.precision)
            and r.split == current.split and result_variant(r) == result_variant(current)
            and measured_rounded(r) is not None]
    latest = {p: newest([r for r in same if r.precision == p]) for p in {r.precision for r in same}}
    found = bracket({p: measured_rounded(r) for p, r in latest.items()}, conditions_for(entry, protocol), tolerance)
    if found is None:
        return current, None
    return latest[found.chosen], found
