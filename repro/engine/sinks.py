"""Sinks: what the engine does with each image's prediction, after the network and the argmax.

Every sink follows one small protocol (`Sink`); an image is taken in two steps, so that a
failure never leaves one sink holding the image and another not (the saved progress of such a
run would count an image twice on resume):
- `prepare(sample, prediction)`: the work that can fail (counting, writing a file); it changes
  nothing the sink holds, and returns the image's part;
- `add(part)`: takes the part in, in memory only (it cannot fail).
The loop prepares every sink's part, then adds them all, then counts the image, inside the
interrupt-safe block. Also:
- `settings()`: what the sink holds or writes (its folder, its class count, ...), kept with its
  state: a resumed run restores a sink only from a state saved under the same settings;
- `state()` / `restore(state)`: what resume needs, kept in the progress file (tensors, numbers,
  strings only: it is loaded with weights_only); `restore` takes the whole state or raises
  ValueError and keeps nothing;
- `merge(collective)`: after the loop, combine the ranks' parts (each sink on its own terms);
- `finish(finished)`: on rank 0, the fields the sink adds to the result (it may write files
  that are not the result: the submission zip).

`MetricSink` is the metric and its evidence: the dataset-wide confusion matrix and each image's
counts (the sidecar `<result stem>.evidence.npz`), one sink, so that the two can never disagree.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from repro.engine.devices import Collective
from repro.metrics import ConfusionMatrix, image_confusion
from repro.text import counted

SUBMISSION_DIR = "submissions"


@dataclass
class Sample:
    """One predicted image as the sinks see it; `label` (on the device) is None without labels."""

    id: str
    label: torch.Tensor | None
    size: tuple[int, int]
    num_classes: int


@dataclass(frozen=True)
class Finished:
    """What `finish` may need: where the result goes and how many images it should cover."""

    result_path: Path
    images: int  # images the run covers (after --limit), over all ranks


class Sink(Protocol):
    name: str

    def settings(self) -> dict[str, Any]: ...
    def prepare(self, sample: Sample, prediction: torch.Tensor) -> Any: ...
    def add(self, part: Any) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...
    def merge(self, collective: Collective) -> None: ...
    def finish(self, finished: Finished) -> dict[str, Any]: ...


def saved_ids(state: dict[str, Any]) -> list[str]:
    """The image ids of a sink's saved state (ValueError when they are not a list of names)."""
    ids = state["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("saved image ids are not a list of names")
    return list(ids)


class MetricSink:
    """Labelled runs: the dataset-wide confusion matrix (int64, exact) and per image, over the
    pixels the metric counts, intersect, union, gt_area and pred_area (C each) and the ignored
    label pixels. Server runs (no labels): per image, what was predicted (every pixel). Saved as
    the evidence sidecar (repro.results.evidence), rows sorted by image id, so resume, ranks and
    shards give the sidecar of one uninterrupted process."""

    name = "metric"
    FIELDS = ("intersect", "union", "gt_area", "pred_area")

    def __init__(self, class_names: tuple[str, ...] | list[str], device: torch.device, labelled: bool = True):
        self.class_names, self.labelled = list(class_names), labelled
        self.num_classes = len(self.class_names)
        self.matrix = ConfusionMatrix(self.num_classes, device=device) if labelled else None
        self.ids: list[str] = []
        self.rows: list[torch.Tensor] = []  # per image: (4, C) (labelled) or (1, C), CPU or device
        self.ignored: list[torch.Tensor] = []

    def settings(self) -> dict[str, Any]:
        return {"classes": self.num_classes, "labelled": self.labelled}

    def prepare(self, sample: Sample, prediction: torch.Tensor) -> tuple:
        if not self.labelled:
            return sample.id, None, torch.bincount(prediction.reshape(-1), minlength=self.num_classes)[None], None
        counts = image_confusion(prediction, sample.label, self.num_classes)
        inter, gt, pred = counts.diagonal(), counts.sum(dim=1), counts.sum(dim=0)
        row = torch.stack((inter, gt + pred - inter, gt, pred))
        return sample.id, counts, row, sample.label.numel() - counts.sum()

    def add(self, part: tuple) -> None:
        image_id, counts, row, ignored = part
        if counts is not None:
            self.matrix.matrix += counts
            self.ignored.append(ignored)
        self.rows.append(row)
        self.ids.append(image_id)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        kinds = len(self.FIELDS) if self.labelled else 1
        rows = (torch.stack([r.cpu() for r in self.rows]).numpy() if self.rows
                else np.zeros((0, kinds, self.num_classes), np.int64))
        ignored = torch.stack([n.cpu() for n in self.ignored]).numpy() if self.ignored else np.zeros((0,), np.int64)
        return rows.astype(np.int64), ignored.astype(np.int64)

    def state(self) -> dict[str, Any]:
        rows, ignored = self._arrays()
        state = {"ids": list(self.ids), "rows": torch.from_numpy(rows), "ignored": torch.from_numpy(ignored)}
        if self.labelled:
            state["matrix"] = torch.from_numpy(self.matrix.to_numpy())
        return state

    def restore(self, state: dict[str, Any]) -> None:
        ids, rows, ignored = saved_ids(state), state["rows"], state["ignored"]
        kinds = len(self.FIELDS) if self.labelled else 1
        if tuple(rows.shape) != (len(ids), kinds, self.num_classes):
            raise ValueError(f"saved per-image counts of shape {tuple(rows.shape)} for {len(ids)} images")
        if self.labelled:
            matrix = state["matrix"]
            if tuple(matrix.shape) != (self.num_classes, self.num_classes) or len(ignored) != len(ids):
                raise ValueError("saved confusion matrix or ignored counts do not fit")
            self.matrix.matrix.copy_(matrix.to(self.matrix.matrix.device))
        self.ids, self.rows = ids, list(rows.unbind(0))
        self.ignored = list(ignored.unbind(0)) if self.labelled else []

    def merge(self, collective: Collective) -> None:
        """Integer sums and concatenated rows: the same whatever the split over ranks."""
        rows, ignored = self._arrays()
        parts = collective.gather((list(self.ids), rows, ignored, self.matrix.to_numpy() if self.labelled else None))
        self.ids = [i for part in parts for i in part[0]]
        self.rows = list(torch.from_numpy(np.concatenate([part[1] for part in parts])).unbind(0))
        self.ignored = list(torch.from_numpy(np.concatenate([part[2] for part in parts])).unbind(0))
        if self.labelled:
            summed = np.sum([part[3] for part in parts], axis=0, dtype=np.int64)
            self.matrix.matrix.copy_(torch.from_numpy(summed).to(self.matrix.matrix.device))

    def evidence(self):
        """The per-image evidence of the merged run (repro.results.evidence.Evidence)."""
        from repro.results.evidence import Evidence

        rows, ignored = self._arrays()
        ids = np.asarray(self.ids, dtype=str)
        if not self.labelled:
            return Evidence(image_ids=ids, pred_area=rows[:, 0]).sorted_by_id()
        fields = {name: rows[:, k] for k, name in enumerate(self.FIELDS)}
        return Evidence(image_ids=ids, confusion=self.matrix.to_numpy(), ignored=ignored, **fields).sorted_by_id()

    def finish(self, finished: Finished) -> dict[str, Any]:
        if not self.labelled:
            return {}
        scores = self.matrix.scores()
        miou = scores.miou * 100.0
        metrics = {
            "miou": miou,
            "miou_rounded": round(miou, 2),
            "aacc": scores.aacc * 100.0,
            "macc": scores.macc * 100.0,
            "per_class_iou": scores.per_class(self.class_names),
        }
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}


class SubmissionSink:
    """Cityscapes test-server PNGs (labelIds), zipped at the end. The PNGs are on disk; the
    state names the images written, and a resumed run checks they are still there. A fresh run
    starts from an empty folder (an older run's PNGs must not be zipped)."""

    name = "submission"

    def __init__(self, output: Path, stem: str, collective: Collective, fresh: bool):
        from repro.datasets import CityscapesSubmissionWriter

        self.folder = output / SUBMISSION_DIR / stem
        if fresh and collective.ranks.rank == 0 and self.folder.exists():
            shutil.rmtree(self.folder)
        collective.barrier()
        self.writer = CityscapesSubmissionWriter(self.folder)
        self.ids: list[str] = []

    def settings(self) -> dict[str, Any]:
        return {"folder": str(self.folder)}

    def prepare(self, sample: Sample, prediction: torch.Tensor) -> str:
        self.writer.add(sample.id, prediction.to(torch.int64).cpu().numpy())
        return sample.id

    def add(self, part: str) -> None:
        self.ids.append(part)

    def state(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    def restore(self, state: dict[str, Any]) -> None:
        ids = saved_ids(state)
        missing = [i for i in ids if not self.writer.has(i)]
        if missing:
            raise ValueError(f"{counted(len(missing), 'submission PNG')} of counted images gone, e.g. {missing[0]}")
        self.ids = ids

    def merge(self, collective: Collective) -> None:
        collective.barrier()  # every rank's PNGs are on disk before rank 0 zips them

    def finish(self, finished: Finished) -> dict[str, Any]:
        return {"submission": str(self.writer.finish(expected_count=finished.images))}
