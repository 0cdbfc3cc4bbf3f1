"""`--save-predictions DIR [--paint]`: one label PNG per image, named as the dataset names the
image's label file under the split's label folder (`DatasetSpec.prediction_name`: VSPW
`<video>/mask/<frame>.png`, Cityscapes `<city>/<name>_gtFine_labelIds.png`, ADE20k `<id>.png`,
COCO-Stuff's `.mat` labels as `<id>.png`), so the folder compares file by file with the
ground-truth folder; holding class ids in the numbering of the dataset's own label files
(`LabelRule.class_values`: ADE20k's reduced classes written back +1, as mmseg's --out does;
Cityscapes trainIds as labelIds), uint8, or uint16 above 255; with --paint also the same names
under `<DIR>/paint/` in the dataset's colours (`repro.datasets.registry.palette`).

Each PNG is written atomically, so an interrupted run keeps what it wrote and its resume does not
write a counted image again. `<DIR>/.repro-predictions.json` names the run that owns the folder;
a folder holding another run's PNGs is refused unless --force.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from repro.engine.devices import Collective
from repro.engine.job import EvalJob
from repro.engine.options import EngineOptions
from repro.engine.sinks import Finished, Sample
from repro.errors import ReproError
from repro.fileio import atomic_path, atomic_write_text

OWNER_FILE = ".repro-predictions.json"
PAINT_DIR = "paint"


def run_identity(job: EvalJob, options: EngineOptions) -> dict[str, Any]:
    """What makes two runs' predictions the same: the folder's owner record."""
    return {"model_id": job.model_id, "protocol": job.protocol_name, "variant": job.variant,
            "checkpoint_sha256": job.checkpoint_sha256, "dataset": job.dataset_name, "split": job.split,
            "data_root": job.data_root, "settings": job.settings(), "precision": options.precision}


def claim_folder(folder: Path, identity: dict[str, Any], force: bool) -> None:
    """Make `folder` this run's: refused when it holds another run's PNGs, unless `force`."""
    if folder.exists() and not folder.is_dir():
        raise ReproError(f"--save-predictions {folder} is a file, not a folder")
    owner_file = folder / OWNER_FILE
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        owner = None
    foreign = owner != identity if owner is not None else any(folder.rglob("*.png")) if folder.is_dir() else False
    if foreign and not force:
        whose = f"{owner.get('model_id')} [{owner.get('protocol')}]" if isinstance(owner, dict) else "another run"
        raise ReproError(f"--save-predictions {folder} holds the predictions of {whose}; "
                         "choose another folder or pass --force to write over them")
    atomic_write_text(owner_file, json.dumps(identity, indent=2, sort_keys=True) + "\n")


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ReproError(f"cannot encode the prediction PNG {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


class PredictionSink:
    """Writes each image's prediction as a label PNG (and a painted one); its state is on disk."""

    name = "predictions"

    def __init__(self, job: EvalJob, options: EngineOptions, collective: Collective):
        from repro.datasets.registry import get_spec, palette

        self.folder = Path(options.save_predictions).expanduser().resolve()
        if collective.ranks.rank == 0:
            claim_folder(self.folder, run_identity(job, options), options.force)
        collective.barrier()
        self.spec = get_spec(job.dataset_name)
        values = self.spec.rule.class_values()
        self.values = values.astype(np.uint8 if values.max() <= 255 else np.uint16)
        self.colours = palette(job.dataset_name)[:, ::-1].copy() if options.paint else None  # BGR for cv2

    def path_for(self, sample_id: str, painted: bool = False) -> Path:
        return (self.folder / PAINT_DIR if painted else self.folder) / self.spec.prediction_name(sample_id)

    def process(self, sample: Sample, prediction: torch.Tensor) -> None:
        classes = prediction.to(torch.int64).cpu().numpy()
        _write_png(self.path_for(sample.id), self.values[classes])
        if self.colours is not None:
            _write_png(self.path_for(sample.id, painted=True), self.colours[classes])

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def merge(self, collective: Collective) -> None:
        collective.barrier()

    def finish(self, finished: Finished) -> dict[str, Any]:
        return {"predictions_dir": str(self.folder)}
