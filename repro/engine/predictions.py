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
from repro.engine.sinks import Finished, Sample, saved_ids
from repro.errors import ReproError
from repro.fileio import atomic_path, atomic_write_text
from repro.text import counted

OWNER_FILE = ".repro-predictions.json"
PAINT_DIR = "paint"


def run_identity(job: EvalJob, options: EngineOptions, dataset_fingerprint: str | None) -> dict[str, Any]:
    """What makes two runs' predictions the same (the folder's owner record): the row, the
    checkpoint, the dataset files and how many of them, the protocol and the precision."""
    return {"model_id": job.model_id, "protocol": job.protocol_name, "variant": job.variant,
            "checkpoint_sha256": job.checkpoint_sha256, "dataset": job.dataset_name, "split": job.split,
            "data_root": job.data_root, "settings": job.settings(), "precision": options.precision,
            "limit": options.limit, "dataset_fingerprint": dataset_fingerprint}


def result_identity(result: Any) -> dict[str, Any]:
    """`run_identity` of the run that wrote a result."""
    return {"model_id": result.model_id, "protocol": result.protocol, "variant": result.variant,
            "checkpoint_sha256": result.checkpoint_sha256, "dataset": result.dataset, "split": result.split,
            "data_root": result.data_root, "settings": result.settings, "precision": result.precision,
            "limit": result.limit, "dataset_fingerprint": result.dataset_fingerprint}


def folder_owner(folder: str | Path) -> dict[str, Any] | None:
    """The identity recorded in a predictions folder (None: no record, or unreadable)."""
    try:
        owner = json.loads((Path(folder) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def claim_folder(folder: Path, identity: dict[str, Any], force: bool) -> bool:
    """Make `folder` this run's: refused when it holds another run's PNGs, unless `force`.
    Returns whether the folder was already a repro predictions folder (its PNGs are repro's)."""
    if folder.exists() and not folder.is_dir():
        raise ReproError(f"--save-predictions {folder} is a file, not a folder")
    owner_file = folder / OWNER_FILE
    owner = folder_owner(folder)
    folder_had_pngs = folder.is_dir() and any(folder.rglob("*.png"))
    foreign = owner != identity if owner is not None else folder_had_pngs
    if foreign and not force:
        whose = f"{owner.get('model_id')} [{owner.get('protocol')}]" if isinstance(owner, dict) else "another run"
        raise ReproError(f"--save-predictions {folder} holds the predictions of {whose}; "
                         "choose another folder or pass --force to write over them")
    try:
        atomic_write_text(owner_file, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise ReproError(f"cannot write to --save-predictions {folder}: {err.strerror or err}") from None
    return owner is not None or not folder_had_pngs


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ReproError(f"cannot encode the prediction PNG {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


class PredictionSink:
    """Writes each image's prediction as a label PNG (and a painted one). The PNGs are on disk;
    the state names the images written, and a resumed run checks they are still there. When the
    run ends, the PNGs an earlier run left in a folder repro owns (an image since removed from the
    dataset, or beyond a new --limit) are removed; never before: until then they may be the
    predictions of a finished result that an interrupted redo leaves in place."""

    name = "predictions"

    def __init__(self, job: EvalJob, options: EngineOptions, collective: Collective, dataset_fingerprint: str | None):
        from repro.datasets.registry import get_spec, palette

        self.folder = Path(options.save_predictions).expanduser().resolve()
        self.painted = bool(options.paint)
        self.owned = False
        if collective.ranks.rank == 0:
            self.owned = claim_folder(self.folder, run_identity(job, options, dataset_fingerprint), options.force)
        collective.barrier()
        self.spec = get_spec(job.dataset_name)
        values = self.spec.rule.class_values()
        self.values = values.astype(np.uint8 if values.max() <= 255 else np.uint16)
        self.colours = palette(job.dataset_name)[:, ::-1].copy() if self.painted else None  # BGR for cv2
        self.ids: list[str] = []

    def path_for(self, sample_id: str, painted: bool = False) -> Path:
        return prediction_path(self.folder, self.spec, sample_id, painted)

    def settings(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "paint": self.painted}

    def prepare(self, sample: Sample, prediction: torch.Tensor) -> str:
        classes = prediction.to(torch.int64).cpu().numpy()
        _write_png(self.path_for(sample.id), self.values[classes])
        if self.colours is not None:
            _write_png(self.path_for(sample.id, painted=True), self.colours[classes])
        return sample.id

    def add(self, part: str) -> None:
        self.ids.append(part)

    def state(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    def _files(self, ids: list[str]) -> list[Path]:
        """The PNGs of these images: label, and painted with --paint."""
        return [self.path_for(i) for i in ids] + ([self.path_for(i, True) for i in ids] if self.painted else [])

    def restore(self, state: dict[str, Any]) -> None:
        ids = saved_ids(state)
        missing = [path for path in self._files(ids) if not path.is_file()]
        if missing:
            raise ValueError(f"{counted(len(missing), 'saved prediction PNG')} of counted images gone, e.g. {missing[0]}")
        self.ids = ids

    def merge(self, collective: Collective) -> None:
        """Every rank's PNGs are on disk, and rank 0 knows them all (to prune the rest)."""
        self.ids = [i for part in collective.gather(list(self.ids)) for i in part]

    def finish(self, finished: Finished) -> dict[str, Any]:
        if self.owned:
            wanted = set(self._files(self.ids))
            for path in self.folder.rglob("*.png"):
                if path not in wanted:
                    path.unlink(missing_ok=True)  # an earlier run's, not this run's
        return {"predictions_dir": str(self.folder)}


def prediction_path(folder: Path, spec: Any, sample_id: str, painted: bool = False) -> Path:
    """Where the prediction PNG of `sample_id` goes in a --save-predictions folder: the path of
    its label file in the dataset's own layout (`DatasetSpec.prediction_name`)."""
    return (folder / PAINT_DIR if painted else folder) / spec.prediction_name(sample_id)


def predictions_out_of_step(folder: str | Path, dataset: str, image_ids: list[str]) -> int:
    """How many label PNGs of `folder` are not those of these images of `dataset`: missing, or
    left over from another run (the painted copies aside); 0 when the folder holds exactly theirs."""
    from repro.datasets.registry import get_spec

    folder, spec = Path(folder), get_spec(dataset)
    if not folder.is_dir():
        return len(image_ids)
    wanted = {prediction_path(folder, spec, i) for i in image_ids}
    present = {p for p in folder.rglob("*.png") if p.relative_to(folder).parts[0] != PAINT_DIR}
    return len(wanted - present) + len(present - wanted)
