"""Dataset-wide confusion matrix and the metrics upstream reports (IoU, mIoU) plus aAcc, mAcc and
fwIoU: the one home of these formulas (the evidence sidecar calls them too).

Upstream (chainercv's `eval_semantic_segmentation`, or its own histogram fallback, which agree)
accumulates one confusion matrix over every image of the split, drops pixels whose ground truth is
ignored (-1; anything outside [0, C) was already mapped to -1), and takes
`IoU = TP / (GT + Pred - TP)` per class and `mIoU = nanmean(IoU)`: a class with zero union over
the whole split (never in the ground truth, never predicted) is NaN and left out, while a class
predicted somewhere but never in the ground truth has IoU 0 and counts.

The formulas are numpy; torch loads only for the counting (`image_confusion`, `ConfusionMatrix`),
so readers of recorded counts (`repro report`, `repro explain`) score without importing it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def image_confusion(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray, num_classes: int,
                    device: str | torch.device | None = None) -> torch.Tensor:
    """One image's (C, C) int64 counts (rows = ground truth, columns = prediction) over the pixels
    the metric counts: ground truth outside [0, C) (ignored) is left out, as upstream does."""
    import torch

    pred_t = torch.as_tensor(pred, device=device)
    gt_t = torch.as_tensor(gt, device=pred_t.device)
    if pred_t.shape != gt_t.shape:
        raise ValueError(f"prediction {tuple(pred_t.shape)} and ground truth {tuple(gt_t.shape)} differ in shape")
    pred_t = pred_t.reshape(-1).long()
    gt_t = gt_t.reshape(-1).long()
    if pred_t.numel() and (int(pred_t.min()) < 0 or int(pred_t.max()) >= num_classes):
        raise ValueError(f"predicted classes must lie in [0, {num_classes})")
    valid = (gt_t >= 0) & (gt_t < num_classes)  # upstream maps these to -1 and skips them
    flat = gt_t[valid] * num_classes + pred_t[valid]
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


class ConfusionMatrix:
    """An exact int64 (C, C) count matrix: rows = ground-truth class, columns = predicted class."""

    def __init__(self, num_classes: int, device: str | torch.device = "cpu"):
        import torch

        if num_classes <= 0:
            raise ValueError("num_classes must be positive")
        self.num_classes = int(num_classes)
        self.matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> None:
        """Add one image: `pred` class indices in [0, C), `gt` with ignored pixels < 0 or >= C."""
        self.matrix += image_confusion(pred, gt, self.num_classes, self.matrix.device)

    def merge(self, other: ConfusionMatrix) -> None:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different class counts")
        self.matrix += other.matrix.to(self.matrix.device)

    def to_numpy(self) -> np.ndarray:
        return self.matrix.detach().cpu().numpy().astype(np.int64, copy=True)

    @classmethod
    def from_numpy(cls, matrix: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> ConfusionMatrix:
        import torch

        array = torch.as_tensor(np.asarray(matrix), dtype=torch.int64)
        if array.dim() != 2 or array.shape[0] != array.shape[1]:
            raise ValueError(f"a confusion matrix is square, got shape {tuple(array.shape)}")
        cm = cls(array.shape[0], device=device)
        cm.matrix.copy_(array.to(device))
        return cm

    def scores(self) -> Scores:
        return compute_scores(self.to_numpy())


@dataclass(frozen=True)
class Scores:
    """Metrics as fractions (multiply by 100 for percent); NaN where a class is undefined."""

    iou: np.ndarray  # (C,) float64, NaN where the union is 0
    acc: np.ndarray  # (C,) float64 per-class recall, NaN where the class is absent from GT
    gt_share: np.ndarray  # (C,) float64 each class's share of the counted ground-truth pixels
    miou: float
    aacc: float  # overall pixel accuracy
    macc: float  # nan-mean of per-class accuracy
    fwiou: float  # frequency-weighted IoU: each class's IoU weighted by its gt_share

    def per_class(self, class_names: Sequence[str], values: np.ndarray | None = None) -> dict[str, float | None]:
        """Per-class values in percent by class name; None where NaN (JSON has no NaN)."""
        values = self.iou if values is None else values
        if len(class_names) != len(values):
            raise ValueError(f"{len(class_names)} class names for {len(values)} classes")
        return {name: (None if np.isnan(v) else float(v) * 100.0) for name, v in zip(class_names, values)}


def nan_mean(values: np.ndarray, axis: int | None = None):
    """np.nanmean without the RuntimeWarning: NaN where every value is NaN (or none exists).
    A float for axis None, else an array."""
    values = np.asarray(values, dtype=np.float64)
    if axis is None and not values.size:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=axis)
    return float(mean) if axis is None else np.asarray(mean, dtype=np.float64)


def ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole elementwise as float64, NaN where whole is 0: IoU (intersection / union) and
    accuracy (TP / ground truth), per class over a split or per image and class."""
    whole = np.asarray(whole)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, np.asarray(part, dtype=np.float64) / np.maximum(whole, 1), np.nan)


def compute_scores(matrix: np.ndarray) -> Scores:
    """IoU / mIoU / aAcc / mAcc / fwIoU of a (C, C) confusion matrix (rows = GT, columns = prediction)."""
    m = np.asarray(matrix, dtype=np.int64)
    true_positive = np.diag(m).astype(np.float64)
    gt_count = m.sum(axis=1).astype(np.float64)
    pred_count = m.sum(axis=0).astype(np.float64)
    iou = ratio(true_positive, gt_count + pred_count - true_positive)
    total = m.sum()  # exact (int64)
    gt_share = gt_count / total if total > 0 else np.full_like(gt_count, np.nan)
    present = gt_count > 0  # a class with pixels has a defined IoU (its union is at least its pixels)
    fwiou = float((gt_share[present] * iou[present]).sum()) if total > 0 else float("nan")
    aacc = float(true_positive.sum() / total) if total > 0 else float("nan")
    acc = ratio(true_positive, gt_count)
    return Scores(iou=iou, acc=acc, gt_share=gt_share, miou=nan_mean(iou), aacc=aacc, macc=nan_mean(acc),
                  fwiou=fwiou)
