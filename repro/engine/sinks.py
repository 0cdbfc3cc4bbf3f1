"""Sinks: what the engine does with each image's prediction, after the network and the argmax.

Every sink follows one small protocol (`Sink`):
- `process(sample, prediction)`: one image (called inside the interrupt-safe block, so a signal
  never leaves one sink updated and another not);
- `state()` / `restore(state)`: what resume needs, kept in the progress file (tensors, numbers,
  strings only: it is loaded with weights_only);
- `merge(collective)`: after the loop, combine the ranks' parts (each sink on its own terms);
- `finish(finished)`: on rank 0, the fields the sink adds to the result (it may write files).

`Sample.pair_counts` computes an image's (C, C) counts once, for every sink that wants them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from repro.engine.devices import Collective
from repro.metrics import ConfusionMatrix, image_confusion

SUBMISSION_DIR = "submissions"


@dataclass
class Sample:
    """One predicted image as the sinks see it; `label` (on the device) is None without labels."""

    id: str
    label: torch.Tensor | None
    size: tuple[int, int]
    num_classes: int
    _counts: torch.Tensor | None = field(default=None, repr=False)

    def pair_counts(self, prediction: torch.Tensor) -> torch.Tensor:
        """(C, C) int64 counts of this image over the pixels the metric counts (computed once)."""
        if self._counts is None:
            self._counts = image_confusion(prediction, self.label, self.num_classes)
        return self._counts


@dataclass(frozen=True)
class Finished:
    """What `finish` may need: where the result goes and how many images it should cover."""

    result_path: Path
    images: int  # images the run covers (after --limit), over all ranks


class Sink(Protocol):
    name: str

    def process(self, sample: Sample, prediction: torch.Tensor) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...
    def merge(self, collective: Collective) -> None: ...
    def finish(self, finished: Finished) -> dict[str, Any]: ...


class ConfusionSink:
    """The dataset-wide confusion matrix (int64, exact): the metric."""

    name = "confusion"

    def __init__(self, class_names: tuple[str, ...] | list[str], device: torch.device):
        self.class_names = list(class_names)
        self.matrix = ConfusionMatrix(len(self.class_names), device=device)

    def process(self, sample: Sample, prediction: torch.Tensor) -> None:
        self.matrix.matrix += sample.pair_counts(prediction)

    def state(self) -> dict[str, Any]:
        return {"matrix": torch.from_numpy(self.matrix.to_numpy())}

    def restore(self, state: dict[str, Any]) -> None:
        saved = state["matrix"]
        if tuple(saved.shape) != tuple(self.matrix.matrix.shape):
            raise ValueError("saved confusion matrix of another class count")
        self.matrix.matrix.copy_(saved.to(self.matrix.matrix.device))

    def merge(self, collective: Collective) -> None:
        """Integer sums: the same matrix whatever the split over ranks."""
        parts = collective.gather(self.matrix.to_numpy())
        summed = np.sum(parts, axis=0, dtype=np.int64)
        self.matrix.matrix.copy_(torch.from_numpy(summed).to(self.matrix.matrix.device))

    def finish(self, finished: Finished) -> dict[str, Any]:
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
    """Cityscapes test-server PNGs (labelIds), zipped at the end. The files on disk are its
    state: a resumed run finds those already written; a fresh run starts from an empty folder."""

    name = "submission"

    def __init__(self, output: Path, stem: str, collective: Collective, fresh: bool):
        from repro.datasets import CityscapesSubmissionWriter

        folder = output / SUBMISSION_DIR / stem
        if fresh and collective.ranks.rank == 0 and folder.exists():
            shutil.rmtree(folder)  # predictions of an older, different run must not be zipped
        collective.barrier()
        self.writer = CityscapesSubmissionWriter(folder)

    def process(self, sample: Sample, prediction: torch.Tensor) -> None:
        self.writer.add(sample.id, prediction.to(torch.int64).cpu().numpy())

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def merge(self, collective: Collective) -> None:
        collective.barrier()  # every rank's PNGs are on disk before rank 0 zips them

    def finish(self, finished: Finished) -> dict[str, Any]:
        return {"submission": str(self.writer.finish(expected_count=finished.images))}


class EvidenceSink:
    """Per image, over the pixels the metric counts: intersect, union, gt_area, pred_area (C
    each, int64) and the ignored label pixels; server runs: the prediction histogram only. Saved
    as `<result stem>.evidence.npz` (repro.results.evidence), rows sorted by image id, so resume, ranks
    and shards give the sidecar of one uninterrupted process."""

    name = "evidence"
    FIELDS = ("intersect", "union", "gt_area", "pred_area")

    def __init__(self, num_classes: int, confusion: ConfusionSink | None):
        self.num_classes, self.confusion = num_classes, confusion
        self.ids: list[str] = []
        self.rows: list[torch.Tensor] = []  # per image: (4, C) (labelled) or (1, C), on the device
        self.ignored: list[torch.Tensor] = []

    def process(self, sample: Sample, prediction: torch.Tensor) -> None:
        self.ids.append(sample.id)
        if self.confusion is None:  # no labels: what was predicted, every pixel
            self.rows.append(torch.bincount(prediction.reshape(-1), minlength=self.num_classes)[None])
            return
        counts = sample.pair_counts(prediction)
        inter, gt, pred = counts.diagonal(), counts.sum(dim=1), counts.sum(dim=0)
        self.rows.append(torch.stack((inter, gt + pred - inter, gt, pred)))
        self.ignored.append(sample.label.numel() - counts.sum())

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        kinds = len(self.FIELDS) if self.confusion is not None else 1
        # restored rows live on the CPU, new ones on the device
        rows = (torch.stack([r.cpu() for r in self.rows]).numpy() if self.rows
                else np.zeros((0, kinds, self.num_classes), np.int64))
        ignored = torch.stack([n.cpu() for n in self.ignored]).numpy() if self.ignored else np.zeros((0,), np.int64)
        return rows.astype(np.int64), ignored.astype(np.int64)

    def state(self) -> dict[str, Any]:
        rows, ignored = self._arrays()
        return {"ids": list(self.ids), "rows": torch.from_numpy(rows), "ignored": torch.from_numpy(ignored)}

    def restore(self, state: dict[str, Any]) -> None:
        self.ids = [str(i) for i in state["ids"]]
        self.rows = list(state["rows"].unbind(0))
        self.ignored = list(state["ignored"].unbind(0))

    def merge(self, collective: Collective) -> None:
        rows, ignored = self._arrays()
        parts = collective.gather((list(self.ids), rows, ignored))
        self.ids = [i for part in parts for i in part[0]]
        self.rows = list(torch.from_numpy(np.concatenate([part[1] for part in parts])).unbind(0))
        self.ignored = list(torch.from_numpy(np.concatenate([part[2] for part in parts])).unbind(0))

    def evidence(self):
        from repro.results.evidence import Evidence

        rows, ignored = self._arrays()
        ids = np.asarray(self.ids, dtype=str)
        if self.confusion is None:
            return Evidence(image_ids=ids, pred_area=rows[:, 0]).sorted_by_id()
        fields = {name: rows[:, k] for k, name in enumerate(self.FIELDS)}
        return Evidence(image_ids=ids, confusion=self.confusion.matrix.to_numpy(), ignored=ignored,
                        **fields).sorted_by_id()

    def finish(self, finished: Finished) -> dict[str, Any]:
        from repro.results.files import evidence_path

        path = evidence_path(finished.result_path)
        return {"evidence": path.name, "evidence_sha256": self.evidence().save(path)}
