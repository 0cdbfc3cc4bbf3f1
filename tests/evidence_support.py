"""An independent numpy implementation of the evidence's per-image counting (the engine counts
with torch on the device, repro.engine.sinks): tests build Evidence with it to cross-check the
engine and to plant faults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from repro.results.evidence import Evidence


@dataclass(frozen=True)
class ImageCounts:
    """One image's contribution: its confusion (C, C) and its per-image rows."""

    confusion: np.ndarray | None
    intersect: np.ndarray | None
    union: np.ndarray | None
    gt_area: np.ndarray | None
    pred_area: np.ndarray
    ignored: int


def count_image(prediction: np.ndarray, label: np.ndarray | None, num_classes: int) -> ImageCounts:
    """Counts of one image as repro.metrics scores it (label pixels outside [0, C) ignored)."""
    pred = np.asarray(prediction).reshape(-1).astype(np.int64)
    if label is None:  # server split: the prediction histogram over every pixel
        return ImageCounts(None, None, None, None, np.bincount(pred, minlength=num_classes), 0)
    gt = np.asarray(label).astype(np.int64)
    if gt.shape != np.shape(prediction):
        raise ValueError(f"prediction {np.shape(prediction)} and label {gt.shape} differ in shape")
    gt = gt.reshape(-1)
    valid = (gt >= 0) & (gt < num_classes)
    flat = gt[valid] * num_classes + pred[valid]
    confusion = np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp, gt_area, pred_area = np.diag(confusion).copy(), confusion.sum(axis=1), confusion.sum(axis=0)
    ignored = int(gt.size - valid.sum())
    return ImageCounts(confusion, tp, gt_area + pred_area - tp, gt_area, pred_area, ignored)


class EvidenceBuilder:
    """Collects images one by one (`add`) and gives the Evidence (`build`, rows sorted by id)."""

    def __init__(self, num_classes: int, *, labelled: bool = True):
        self.num_classes = int(num_classes)
        self.labelled = labelled
        self.ids: list[str] = []
        self.rows: list[ImageCounts] = []
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, image_id: str, prediction: np.ndarray, label: np.ndarray | None) -> None:
        if (label is not None) != self.labelled:
            raise ValueError("a labelled evidence needs a label for every image (and a server one none)")
        counts = count_image(prediction, label, self.num_classes)
        self.ids.append(str(image_id))
        self.rows.append(counts)
        if counts.confusion is not None:
            self.confusion += counts.confusion

    def build(self) -> Evidence:
        c = self.num_classes
        stack = lambda name: np.asarray([getattr(r, name) for r in self.rows], dtype=np.int64).reshape(-1, c)  # noqa: E731
        if not self.labelled:
            return Evidence(image_ids=np.asarray(self.ids, dtype=str), pred_area=stack("pred_area")).sorted_by_id()
        return Evidence(
            image_ids=np.asarray(self.ids, dtype=str), pred_area=stack("pred_area"), confusion=self.confusion.copy(),
            intersect=stack("intersect"), union=stack("union"), gt_area=stack("gt_area"),
            ignored=np.asarray([r.ignored for r in self.rows], dtype=np.int64),
        ).sorted_by_id()
