"""Where `repro explain --output` gets an image's prediction: the run's saved label PNGs, else
the recorded checkpoint run again on that image (only when the file still has the recorded
sha256, so the picture shows the network that made the number), else nowhere (said in one line
with the command that records them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.errors import ReproError
from repro.results.files import EvalResult


def _predictions_folder(result_path: Path, result: EvalResult) -> Path | None:
    if not result.predictions_dir:
        return None
    folder = Path(result.predictions_dir).expanduser()
    if not folder.is_absolute():
        folder = result_path.parent / folder
    return folder if folder.is_dir() else None


def _checkpoint_problem(result: EvalResult) -> str | None:
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
class PredictionSource:
    """Reads image, label and prediction of one image id of a result's split."""

    result: EvalResult
    dataset: object | None = None
    folder: Path | None = None  # saved predictions
    kind: str = ""  # "saved predictions" | "recomputed from the checkpoint"
    problem: str | None = None
    _predictor: object | None = None

    @classmethod
    def for_result(cls, result_path: Path, result: EvalResult) -> PredictionSource:
        source = cls(result)
        try:
            from repro.datasets import open_dataset

            source.dataset = open_dataset(result.dataset, result.data_root, result.split)
        except ReproError as err:
            source.problem = f"no image pictures: the dataset cannot be read ({err})"
            return source
        source.folder = _predictions_folder(result_path, result)
        if source.folder is not None:
            source.kind = "saved predictions"
            return source
        problem = _checkpoint_problem(result)
        if problem is None:
            source.kind = "recomputed from the checkpoint"
            return source
        source.problem = (
            f"no image pictures: the run saved no predictions and {problem}; "
            f"`repro eval {result.model_id} --tta {result.protocol} --save-predictions DIR --force` records them"
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
        return sample.image, sample.label, prediction

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
        from repro.models import build_segmentor, load_checkpoint

        model = build_segmentor(self.result.model_id, self.result.variant)
        load_checkpoint(model, self.result.checkpoint)
        num_classes = len(self.result.per_class_iou) or self.dataset.num_classes
        return Predictor(model.eval(), protocol, num_classes, device="cpu", resize_on_cpu=True)
