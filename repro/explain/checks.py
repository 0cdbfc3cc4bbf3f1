"""Checks that name a likely cause of a number that does not reproduce, from a run's evidence.

Each check looks at one symptom the issue trackers of segmentation toolboxes keep reporting and
returns a `Finding` (one line) only when it fires. They read `repro.results.evidence.Evidence` alone, so
they run on any recorded result without the dataset or the model.

Label/image size mismatches are not checked here: the engine refuses them while it evaluates
(`error: label <file> is HxW but image <file> is HxW; ...`), so no result exists to explain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repro.datasets.base import USUAL_IGNORE_SHARE, WRONG_ENCODING_HINT
from repro.datasets.registry import DATASETS
from repro.results.evidence import Evidence

MIN_CLASS_SHARE = 0.001  # a class under 0.1% of labelled pixels may honestly go unpredicted
FEW_IMAGES = 0.01  # "a few images": at most 1% of them (at least one)
OUTLIER_FACTOR, OUTLIER_MARGIN = 3.0, 0.5  # "far worse": 3x the median wrong share and +50 points
MIN_IMAGES_FOR_CONCENTRATION = 5


@dataclass(frozen=True)
class Finding:
    """One fired check: `check` is a stable key (tests, JSON), `line` what the user reads."""

    check: str
    line: str


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def short_name(name: str) -> str:
    """A class's first name ("car" of ADE20k's "car, auto, automobile, ..."): lists stay readable."""
    return name.split(",")[0].strip() or name


def _names(indices: Sequence[int], class_names: Sequence[str], limit: int = 4) -> str:
    shown = [short_name(class_names[i]) for i in indices[:limit]]
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return ", ".join(shown) + more


def never_predicted(evidence: Evidence, class_names: Sequence[str], skip=()) -> Finding | None:
    """A class with a real share of the labels that the model never predicts (the labels of the
    images `skip`, the outliers, left out: their classes are explained by them)."""
    m = evidence.confusion
    pred = m.sum(axis=0)
    gt = m.sum(axis=1) - evidence.gt_area[np.asarray(skip, dtype=np.int64)].sum(axis=0)
    total = gt.sum()
    if total == 0:
        return None
    missing = [int(c) for c in np.argsort(-gt) if gt[c] >= MIN_CLASS_SHARE * total and pred[c] == 0]
    if not missing:
        return None
    share = gt[missing].sum() / total
    return Finding(
        "never-predicted",
        f"{_names(missing, class_names)} ({_pct(share)} of labelled pixels) never predicted: "
        "class order or count of checkpoint and dataset differ, or a head trained without them",
    )


def _histogram_overlap(gt: np.ndarray, pred: np.ndarray, shift: int) -> float:
    """Overlap of the two normalised histograms after moving the prediction's by `shift` classes."""
    g, p = gt / max(gt.sum(), 1), pred / max(pred.sum(), 1)
    if shift > 0:
        return float(np.minimum(g[:-shift], p[shift:]).sum())
    if shift < 0:
        return float(np.minimum(g[-shift:], p[:shift]).sum())
    return float(np.minimum(g, p).sum())


def shifted_labels(evidence: Evidence, class_names: Sequence[str]) -> Finding | None:
    """Predictions that agree with the labels once one is moved by one class (zero-label reduction)."""
    m = evidence.confusion
    total = m.sum()
    if total == 0 or m.shape[0] < 3:
        return None
    gt, pred = m.sum(axis=1), m.sum(axis=0)
    on_diagonal = np.trace(m) / total
    overlap0 = _histogram_overlap(gt, pred, 0)
    for shift in (1, -1):
        band = np.trace(m, offset=shift) / total  # pixels where prediction = label + shift
        overlap = _histogram_overlap(gt, pred, shift)
        if (band >= 0.2 and band > 2 * on_diagonal) or (overlap >= 0.75 and overlap >= overlap0 + 0.25):
            return Finding("shifted-labels", _shift_line(shift, band, on_diagonal, overlap, overlap0))
    return None


def _shift_line(shift: int, band: float, on_diagonal: float, overlap: float, overlap0: float) -> str:
    if shift == 1:
        cause = "labels one lower than the model's classes: zero-label reduction applied twice"
        relation = "label+1"
    else:
        cause = "labels one higher than the model's classes: zero-label reduction not applied"
        relation = "label-1"
    return (
        f"predictions line up with the labels shifted by one (prediction = {relation} for {_pct(band)} "
        f"of pixels, = label for {_pct(on_diagonal)}; histogram overlap {_pct(overlap)} vs "
        f"{_pct(overlap0)} unshifted): {cause}"
    )


def _usual_ignore_share(dataset: str) -> float:
    """Rough share of ignored label pixels in the dataset's official labels (orders of magnitude,
    not measurements: the check fires only far above it, where a wrong label encoding puts it)."""
    spec = DATASETS.get(dataset)  # None: a dataset this tree does not know (a copied result)
    return spec.usual_ignore_share if spec else USUAL_IGNORE_SHARE


def _ignore_ceiling(dataset: str) -> float:
    usual = _usual_ignore_share(dataset)
    return usual + max(usual, 0.15)


def ignore_share(evidence: Evidence, dataset: str) -> Finding | None:
    """Far more ignored label pixels than the dataset usually has (a wrong label encoding)."""
    if evidence.ignored is None:
        return None
    ignored, counted = int(evidence.ignored.sum()), int(evidence.gt_area.sum())
    if ignored + counted == 0:
        return None
    share = ignored / (ignored + counted)
    if share <= _ignore_ceiling(dataset):
        return None
    usual = _usual_ignore_share(dataset)
    spec = DATASETS.get(dataset)
    hint = spec.wrong_encoding_hint if spec else WRONG_ENCODING_HINT
    return Finding(
        "ignore-share",
        f"{_pct(share)} of label pixels are ignored (usually about {_pct(usual)} on {dataset}): {hint}",
    )


def outlier_images(evidence: Evidence) -> np.ndarray:
    """Indices of the few images far worse than the rest: most of their pixels wrong while the
    typical image is mostly right (at most FEW_IMAGES of them; none when many are that bad)."""
    n = evidence.num_images
    if n < MIN_IMAGES_FOR_CONCENTRATION:
        return np.zeros(0, dtype=np.int64)
    counted = evidence.gt_area.sum(axis=1)
    rate = np.where(counted > 0, evidence.image_error() / np.maximum(counted, 1), 0.0)
    typical = float(np.median(rate))
    bad = np.flatnonzero((rate >= max(OUTLIER_FACTOR * typical, typical + OUTLIER_MARGIN)) & (counted > 0))
    if not 0 < len(bad) <= max(1, math.ceil(FEW_IMAGES * n)):
        return np.zeros(0, dtype=np.int64)
    return bad[np.argsort(-rate[bad], kind="stable")]


def error_concentration(evidence: Evidence) -> Finding | None:
    """A few images much worse than all the others (corrupt or mismatched labels)."""
    bad = outlier_images(evidence)
    if not len(bad):
        return None
    counted = evidence.gt_area.sum(axis=1)
    errors = evidence.image_error()
    rate = errors[bad].sum() / max(counted[bad].sum(), 1)
    rest = np.setdiff1d(np.arange(evidence.num_images), bad)
    typical = errors[rest].sum() / max(counted[rest].sum(), 1)
    ids = ", ".join(str(evidence.image_ids[i]) for i in bad[:3]) + (" ..." if len(bad) > 3 else "")
    return Finding(
        "few-images",
        f"{len(bad)} of {evidence.num_images} images {'has' if len(bad) == 1 else 'have'} {_pct(rate)} of "
        f"{'its' if len(bad) == 1 else 'their'} pixels wrong, the others "
        f"{_pct(typical)} ({ids}), holding {_pct(errors[bad].sum() / max(errors.sum(), 1))} of all wrong "
        "pixels: look at the labels (corrupt, mismatched or from another image)",
    )


def evidence_agrees(evidence: Evidence, recorded_miou: float | None) -> Finding | None:
    """The evidence must reproduce the result's own number; if not, the two files do not belong together."""
    if not evidence.totals_match():
        return Finding("evidence-inconsistent", "the per-image rows do not sum to the confusion matrix: "
                       "the evidence file is damaged; re-run `repro eval --force`")
    if recorded_miou is None:
        return None
    recomputed = 100 * evidence.miou()
    if not (abs(recomputed - recorded_miou) <= 1e-9 * max(1.0, abs(recorded_miou))):
        return Finding("evidence-inconsistent", f"the evidence gives mIoU {recomputed:.4f}, the result "
                       f"{recorded_miou:.4f}: they come from different runs; re-run `repro eval --force`")
    return None


def run_checks(evidence: Evidence, class_names: Sequence[str], dataset: str,
               recorded_miou: float | None = None) -> list[Finding]:
    """Every check that fires, most specific cause first."""
    if not evidence.has_labels:
        return []
    shifted = shifted_labels(evidence, class_names)
    found = [
        evidence_agrees(evidence, recorded_miou),
        shifted,
        ignore_share(evidence, dataset),
        error_concentration(evidence),
        # with shifted labels every class is "never predicted" under its own number: said once above
        None if shifted else never_predicted(evidence, class_names, skip=outlier_images(evidence)),
    ]
    return [f for f in found if f is not None]


def not_checked(evidence: Evidence) -> list[str]:
    """Checks that could not run on this evidence, with what would let them run."""
    if not evidence.has_labels:
        return ["a server run has no labels: no cause checks"]
    if evidence.ignored is None:
        return ["ignore share: the evidence has no per-image ignored counts (recorded by newer `repro eval`)"]
    return []
