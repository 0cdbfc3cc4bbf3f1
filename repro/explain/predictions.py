"""Where `repro explain --output` gets an image's prediction: the run's saved label PNGs, else
the recorded checkpoint run again on that image (only when the file still has the recorded
sha256, so the picture shows the network that made the number), else nowhere (said in one line
with the command that records them).

A recomputed prediction is made in fp32 on this machine's CPU (upstream-exact resize), whatever
arithmetic and device the run measured with, so it may differ from the run's in a few pixels. Each
one is therefore counted as the metric counts it and compared with the run's per-image counts in
the evidence sidecar; `recomputed_note` says both on the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from repro.errors import ReproError
from repro.results.evidence import Evidence
from repro.results.files import EvalResult
from repro.text import counted

RECOMPUTED = "recomputed in fp32 on the CPU"  # the picture titles' word for the source


def _predictions_folder(result_path: Path, result: EvalResult) -> tuple[Path | None, str | None]:
    """(the run's saved predictions folder, None), or (None, why its PNGs are not this result's:
    the folder's owner record names another run, as when a later run wrote over it). A folder
    without an owner record was written by an older repro and is taken as the result names it."""
    from repro.engine.predictions import folder_owner, result_identity

    if not result.predictions_dir:
        return None, None
    folder = Path(result.predictions_dir).expanduser()
    if not folder.is_absolute():
        folder = result_path.parent / folder
    if not folder.is_dir():
        return None, None
    owner = folder_owner(folder)  # None: written before repro kept owner records; taken as it is
    if owner is not None and owner != result_identity(result):
        same_row = (owner.get("model_id"), owner.get("protocol")) == (result.model_id, result.protocol)
        return None, (f"the saved predictions in {folder} are not this result's (the PNGs of "
                      f"{owner.get('model_id')} [{owner.get('protocol')}]{', another run' if same_row else ''})")
    return folder, None


def _recorded_checkpoint_problem(result: EvalResult) -> str | None:
    """None when the recorded checkpoint is there with the recorded sha256, else what is wrong."""
    if not result.checkpoint or not result.checkpoint_sha256:
        return "the run recorded no checkpoint file"
    path = Path(result.checkpoint)
    if not path.is_file():
        return f"its checkpoint {path} is gone"
    from repro.fetch.download import file_digest

    if file_digest(path) != result.checkpoint_sha256:
        return f"its checkpoint {path} changed since the run"
    return None


@dataclass
class Agreement:
    """How the recomputed predictions compare with the run's recorded per-image counts."""

    images: int = 0  # recomputed images compared
    identical: int = 0  # whose intersect, gt and pred areas all equal the recorded ones
    differing: int = 0  # pixels predicted otherwise, at least: what the counts can tell
    counted: int = 0  # the counted (not ignored) label pixels of those images

    def add(self, recorded: dict[str, np.ndarray], confusion: np.ndarray) -> None:
        """One image: `recorded` its evidence row, `confusion` the recomputed (C, C) counts."""
        intersect, gt, pred = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
        self.images += 1
        self.counted += int(gt.sum())
        same = (np.array_equal(intersect, recorded["intersect"]) and np.array_equal(gt, recorded["gt_area"])
                and np.array_equal(pred, recorded["pred_area"]))
        self.identical += same
        # a pixel predicted otherwise moves one count between two classes of the prediction
        # histogram and changes the correct pixels by at most one
        moved = int(np.abs(pred - recorded["pred_area"]).sum()) // 2
        self.differing += max(moved, abs(int(intersect.sum()) - int(recorded["intersect"].sum())))

    def text(self) -> str:
        if not self.images:
            return "no image was recomputed"
        verb = "gives" if self.images == 1 else "give"
        line = f"{self.identical} of {counted(self.images, 'image')} {verb} exactly the recorded counts"
        if self.identical == self.images:
            return line
        share = self.differing / self.counted if self.counted else 0.0
        return f"{line}; at least {self.differing:,} of {self.counted:,} pixels ({share:.2%}) predicted otherwise"


def recorded_row(evidence: Evidence | None, image_id: str) -> dict[str, np.ndarray] | None:
    """The evidence's per-image counts of one image (None: no labelled evidence, or no such row)."""
    if evidence is None or not evidence.has_labels:
        return None
    rows = np.flatnonzero(evidence.image_ids == image_id)
    if not len(rows):
        return None
    return {name: getattr(evidence, name)[rows[0]] for name in ("intersect", "gt_area", "pred_area")}


@dataclass
class PredictionSource:
    """Reads image, label and prediction of one image id of a result's split."""

    result: EvalResult
    dataset: object | None = None
    folder: Path | None = None  # saved predictions
    kind: str = ""  # "saved predictions" | RECOMPUTED
    problem: str | None = None
    not_saved: str | None = None  # why the run's saved predictions folder is not used
    evidence: Evidence | None = None  # the run's counts, for the recomputed predictions' agreement
    agreement: Agreement = field(default_factory=Agreement)
    _predictor: object | None = None

    @classmethod
    def for_result(cls, result_path: Path, result: EvalResult, evidence: Evidence | None = None) -> PredictionSource:
        source = cls(result, evidence=evidence)
        try:
            from repro.datasets import open_dataset

            source.dataset = open_dataset(result.dataset, result.data_root, result.split)
        except ReproError as err:
            source.problem = f"no image pictures: the dataset cannot be read ({err})"
            return source
        source.folder, source.not_saved = _predictions_folder(result_path, result)
        if source.folder is not None:
            source.kind = "saved predictions"
            return source
        problem = _recorded_checkpoint_problem(result)
        if problem is None:
            source.kind = RECOMPUTED
            return source
        saved = source.not_saved or "the run saved no predictions"
        source.problem = (
            f"no image pictures: {saved} and {problem}; "
            f"`repro eval {result.model_id} --protocol {result.protocol} --save-predictions DIR --force` records them"
        )
        return source

    def images(self, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(BGR image, label with ignore -1, predicted classes) of one image."""
        sample = self.dataset[self.dataset.index_of(image_id)]
        if self.folder is not None:
            prediction = self._saved(image_id)
        else:
            prediction = self._recomputed(sample)
        if prediction.shape != sample.label.shape:
            raise ValueError(f"prediction {prediction.shape} and label {sample.label.shape} differ in size")
        if self.kind == RECOMPUTED:
            self._compare(image_id, sample.label, prediction)
        return sample.image, sample.label, prediction

    def _compare(self, image_id: str, label: np.ndarray, prediction: np.ndarray) -> None:
        from repro.metrics import image_confusion

        recorded = recorded_row(self.evidence, image_id)
        if recorded is not None:
            confusion = image_confusion(prediction, label, len(recorded["gt_area"])).cpu().numpy()
            self.agreement.add(recorded, confusion)

    def recomputed_note(self) -> str | None:
        """What the pictures of recomputed predictions are and how far they agree with the run's
        recorded counts (None for saved predictions)."""
        if self.kind != RECOMPUTED:
            return None
        r = self.result
        why = f"{self.not_saved}; " if self.not_saved else ""
        return (f"{why}the predictions pictured were {RECOMPUTED} (upstream-exact resize), not in the run's "
                f"arithmetic ({r.precision} on {r.device}); against the run's per-image counts: "
                f"{self.agreement.text()}")

    def _saved(self, image_id: str) -> np.ndarray:
        """A saved PNG holds classes in the dataset's own label numbering: read it as a label."""
        from repro.datasets.base import read_prediction
        from repro.datasets.registry import get_spec

        spec = get_spec(self.result.dataset)
        path = self.folder / spec.prediction_name(image_id)
        earlier = self.folder / f"{image_id}.png"  # how repro named them before they mirrored the labels
        if not path.is_file() and earlier.is_file():
            path = earlier
        if not path.is_file():
            raise ReproError(f"no saved prediction {path}")
        return read_prediction(path, spec.rule, self.result.dataset)

    def _recomputed(self, sample) -> np.ndarray:
        import torch

        from repro.inference.transforms import test_transform

        protocol = self._protocol()
        if self._predictor is None:
            self._predictor = self._build_predictor(protocol)
        with torch.inference_mode():
            scores = self._predictor(test_transform(sample.image, protocol), sample.image.shape[:2])
        return scores.argmax(dim=0).cpu().numpy().astype(np.int64)

    def _protocol(self):
        from repro.manifest import Protocol

        return Protocol.model_validate(self.result.settings)

    def _build_predictor(self, protocol):
        from repro.inference.predictor import Predictor
        from repro.models import load_segmentor

        model = load_segmentor(self.result.model_id, self.result.checkpoint, self.result.variant)
        num_classes = len(self.result.per_class_iou) or self.dataset.num_classes
        return Predictor(model.eval(), protocol, num_classes, device="cpu", resize_on_cpu=True)
