"""Which of a row's results counts: several files may hold results of one (model, protocol)
(another forward, precision, a partial run); `choose_result` picks the current one for the report,
`repro status` and `repro explain`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from repro.numerics import COMPARABLE

if TYPE_CHECKING:  # only for type hints
    from repro.manifest import ModelEntry
    from repro.results.files import EvalResult

# The forward a result file without a `variant` field was produced with (all of them, then).
LEGACY_VARIANT = "upstream-head"



def default_variant(entry: ModelEntry) -> str:
    """The forward a row is measured with unless another is asked for (its first variant)."""
    default = getattr(entry, "default_variant", None)
    if default:
        return default
    variants = getattr(entry, "variants", None)
    return variants[0] if variants else LEGACY_VARIANT


def result_variant(result: EvalResult) -> str:
    """The forward that produced a result; files written before variants existed mean upstream-head."""
    return getattr(result, "variant", None) or LEGACY_VARIANT


def newest(results: Sequence[EvalResult]) -> EvalResult:
    """The most recently finished result (on a tie, the later one given)."""
    picked = results[0]
    for result in results[1:]:
        # .timestamp() so that a naive and an aware datetime compare instead of raising.
        if result.finished.timestamp() >= picked.finished.timestamp():
            picked = result
    return picked


def current_rank(result: EvalResult, default: str, preferred: str = "fp32") -> tuple[bool, bool, bool, bool, int]:
    """How well a result stands for its row (higher is better): the row's default forward, then
    the arithmetic of the documented number (`preferred`, repro.brackets.preferred_precision:
    fp32 unless the document was computed in TF32), then any comparable one over bf16/fp16, then
    a whole split over a partial (--limit, subset) run, then more images over fewer (a --limit 1
    smoke run does not stand for a run over the whole subset)."""
    precision = getattr(result, "precision", "fp32") or "fp32"
    return (result_variant(result) == default, precision == preferred, precision in COMPARABLE,
            result.status != "partial", result.num_images)


def choose_result(candidates: Sequence[EvalResult], default: str,
                  preferred: str = "fp32") -> tuple[EvalResult, list[EvalResult]]:
    """(the result that counts for a row, the newest result of each other variant).

    The current result is the best by `current_rank` (the row's default variant, the documented
    number's arithmetic, complete, more images), the newest among equals: a --limit smoke run or a
    bf16 run never stands for a finished one, nor a --limit 1 run for a run over the whole subset.
    The report, `repro status` and `repro explain` all ask this.
    """
    best = max(current_rank(r, default, preferred) for r in candidates)
    picked = newest([r for r in candidates if current_rank(r, default, preferred) == best])
    by_variant: dict[str, list[EvalResult]] = {}
    for result in candidates:
        if result_variant(result) != result_variant(picked):
            by_variant.setdefault(result_variant(result), []).append(result)
    return picked, [newest(group) for group in by_variant.values()]


def partial_note(result: EvalResult) -> str:
    """How much of the split a partial result covers and why: --limit, a subset of the dataset, or
    --limit on a subset."""
    reason = getattr(result, "partial_reason", None) or ("limit" if result.limit is not None else "subset")
    if reason == "limit":
        return f"{result.num_images}/{result.num_images_total} images (--limit)"
    official = getattr(result, "num_images_official", None) or result.num_images_total
    if result.limit is not None and result.num_images < result.num_images_total:
        return f"{result.num_images}/{official} images (--limit on a subset of {result.num_images_total})"
    return f"{result.num_images}/{official} images (subset of the dataset)"
