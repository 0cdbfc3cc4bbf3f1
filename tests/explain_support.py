"""Synthetic runs with a planted fault, for the tests of `repro explain` / `repro diff` and the
README's worked example.

`make_scene_dataset` writes a mini dataset in the real layout (tests/synthetic_data.py) whose
labels are scenes (sky, building, road, a few objects) and whose images are painted from them,
so pictures mean something. `planted_run` writes a result JSON and its evidence sidecar as the
engine would, for a "model" that predicts the true classes with realistic mistakes (a one-pixel
boundary offset, part of one class taken for another), scored against labels read through a
planted fault:

- None: a clean run;
- "double-reduction": the zero-label reduction applied twice (labels one lower);
- "no-reduction": not applied (labels one higher);
- "label-ids": most classes' pixels ignored, as with Cityscapes labelIds / trainIds mixed up;
- "corrupt-label": the label file of one image replaced on disk by an unrelated one.

`ColourModel` is a network for the real engine that reads each pixel's class from its colour,
and `engine_run` evaluates it with `repro.engine` (evidence and predictions written by the engine).
Run as a script it builds the README example: `python tests/explain_support.py OUT_DIR`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from evidence_support import EvidenceBuilder  # noqa: E402
from synthetic_data import make_ade20k, make_cityscapes  # noqa: E402

from repro.datasets import DATASETS, open_dataset  # noqa: E402
from repro.datasets.cityscapes import TRAINID_TO_LABELID  # noqa: E402
from repro.metrics import compute_scores  # noqa: E402
from repro.results.files import EvalResult, evidence_path, filename_of, write_result  # noqa: E402

FAULTS = (None, "double-reduction", "no-reduction", "label-ids", "corrupt-label")
MODELS = {"ade20k": "mcibi_deeplabv3_r50_ade20k", "cityscapes": "mcibi_deeplabv3_r50_cityscapes"}
# (sky, building, road, tree, person, car) as class indices of each dataset
SCENE_CLASSES = {"ade20k": (2, 1, 6, 4, 12, 20), "cityscapes": (10, 2, 0, 8, 11, 13)}
SETTINGS = {"upstream_block": "test", "resize": {"output_size": [512, 2048], "keep_ratio": True},
            "normalize": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
            "mode": "whole", "crop_size": None, "stride": None, "scales": [1.0], "flip": False,
            "flip_pairs": [], "probs_before_resize": False}


def scene_label(rng: np.random.Generator, size: tuple[int, int], classes) -> np.ndarray:
    """Class indices (ignore -1): sky over buildings over road, a tree, people and a car."""
    sky, building, road, tree, person, car = classes
    h, w = size
    label = np.full(size, sky, np.int32)  # cv2 draws on int32, not int64
    skyline = int(h * rng.uniform(0.25, 0.4))
    label[skyline:, :] = building
    label[int(h * 0.68):, :] = road
    tx = int(rng.integers(w // 8, w // 3))
    cv2.ellipse(label, (tx, int(h * 0.4)), (w // 9, h // 5), 0, 0, 360, tree, -1)
    cv2.rectangle(label, (tx - 1, int(h * 0.5)), (tx + 1, int(h * 0.7)), building, -1)
    cx = int(rng.integers(w // 2, w - w // 4))
    cv2.rectangle(label, (cx, int(h * 0.62)), (cx + w // 5, int(h * 0.82)), car, -1)
    for _ in range(2):
        px = int(rng.integers(w // 3, w - 4))
        cv2.rectangle(label, (px, int(h * 0.52)), (px + 2, int(h * 0.78)), person, -1)
    label[:, :2] = -1  # a thin unlabelled border, as real annotations have
    return label.astype(np.int64)


def scene_image(rng: np.random.Generator, label: np.ndarray, num_classes: int) -> np.ndarray:
    """A BGR picture painted from a label map: one colour per class, some texture."""
    colours = scene_colours(num_classes)
    image = colours[np.where(label < 0, num_classes, label)].astype(np.int16)
    image += rng.integers(-18, 19, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _raw(dataset: str, label: np.ndarray) -> np.ndarray:
    """Class indices -> the dataset's own label numbering (ignore = 0 in both)."""
    if dataset == "ade20k":
        return np.where(label < 0, 0, label + 1).astype(np.uint8)
    lut = np.asarray(TRAINID_TO_LABELID, dtype=np.uint8)
    return np.where(label < 0, 0, lut[np.clip(label, 0, 18)]).astype(np.uint8)


def make_scene_dataset(name: str, root: str | Path, n: int = 12, size=(48, 80), seed: int = 0) -> Path:
    """A mini `name` (ade20k or cityscapes) dataset of scenes; returns the dataset folder."""
    root = Path(root)
    folder = make_ade20k(root, n_val=n, size=size) if name == "ade20k" else make_cityscapes(root, n_val=n, size=size)
    data = open_dataset(name, folder, "val")
    rng = np.random.default_rng(seed)
    for i in range(len(data)):
        label = scene_label(rng, size, SCENE_CLASSES[name])
        Image.fromarray(_raw(name, label)).save(data.label_path(i))
        cv2.imwrite(str(data.image_path(i)), scene_image(rng, label, data.num_classes))
    return folder


def corrupt_label(name: str, folder: Path, index: int) -> str:
    """Replace one label file by an unrelated label (upside down, other classes); returns its id."""
    data = open_dataset(name, folder, "val")
    label = data.read_label(index)
    wrong = np.where(label >= 0, (label[::-1, ::-1] + 3) % data.num_classes, label)
    Image.fromarray(_raw(name, wrong)).save(data.label_path(index))
    return data.ids[index]


def scene_colours(num_classes: int) -> np.ndarray:
    """The colour each class is painted with (index num_classes: unlabelled pixels)."""
    return np.random.default_rng(7).integers(40, 230, (num_classes + 1, 3))


def predict(rng: np.random.Generator, image: np.ndarray, num_classes: int, classes) -> np.ndarray:
    """A decent "model": reads each pixel's class from its colour (nearest scene class), then
    makes a real model's mistakes: boundaries one pixel off, a third of the trees taken for buildings."""
    colours = scene_colours(num_classes)[list(classes)].astype(np.float32)
    distance = ((image[:, :, None, :].astype(np.float32) - colours[None, None]) ** 2).sum(axis=-1)
    prediction = np.asarray(classes, dtype=np.int64)[distance.argmin(axis=-1)]
    prediction = np.roll(prediction, 1, axis=1)
    tree, building = classes[3], classes[1]
    mistaken = (prediction == tree) & (rng.random(prediction.shape) < 0.35)
    prediction[mistaken] = building
    return prediction


def seen_label(fault: str | None, truth: np.ndarray, num_classes: int, classes) -> np.ndarray:
    """The label as a faulty pipeline would hand it to the metric."""
    if fault == "double-reduction":
        return np.where(truth <= 0, -1, truth - 1)
    if fault == "no-reduction":
        return np.where(truth < 0, 0, np.where(truth + 1 >= num_classes, -1, truth + 1))
    if fault == "label-ids":  # the classes of high labelIds fall outside the 19 train ids
        return np.where(np.isin(truth, classes[:2]), -1, truth)
    return truth


def planted_run(results: str | Path, name: str, folder: Path, fault: str | None = None, *,
                protocol: str = "single", predictions: bool = True, seed: int = 1,
                precision: str = "fp32", device: str = "cpu", perturb: float = 0.0) -> Path:
    """Write `<id>__<protocol>.json` + its evidence for a run over `folder`; returns the JSON path.
    `perturb`: a share of pixels predicted as the next class (to make a second, different run)."""
    results = Path(results)
    data = open_dataset(name, folder, "val")
    rng = np.random.default_rng(seed)
    builder = EvidenceBuilder(data.num_classes)
    pred_dir = results / f"predictions-{protocol}-{seed}"
    for i, image_id in enumerate(data.ids):
        sample = data[i]
        truth = sample.label
        prediction = predict(rng, sample.image, data.num_classes, SCENE_CLASSES[name])
        if perturb:
            moved = rng.random(truth.shape) < perturb
            prediction[moved] = (prediction[moved] + 1) % data.num_classes
        builder.add(image_id, prediction, seen_label(fault, truth, data.num_classes, SCENE_CLASSES[name]))
        if predictions:  # named as `repro eval --save-predictions` names them
            saved = pred_dir / DATASETS[name].prediction_name(image_id)
            saved.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_raw(name, prediction)).save(saved)
    evidence = builder.build()
    result = _result(name, folder, protocol, data, evidence, precision, device)
    if predictions:  # with the owner record a run writes (whose PNGs they are)
        from repro.engine.predictions import OWNER_FILE, result_identity

        result.predictions_dir = str(pred_dir)
        (pred_dir / OWNER_FILE).write_text(json.dumps(result_identity(result)))
    path = results / filename_of(result)
    result.evidence = evidence_path(path).name
    result.evidence_sha256 = evidence.save(results / result.evidence)
    assert write_result(result, results) == path
    return path


def _result(name, folder, protocol, data, evidence, precision, device) -> EvalResult:
    scores = compute_scores(evidence.confusion)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    per_class = scores.per_class(data.spec.class_names)
    return EvalResult(
        model_id=MODELS[name], protocol=protocol, settings=SETTINGS, dataset=name, split="val",
        data_root=str(folder), status="complete", miou=100 * scores.miou, miou_rounded=round(100 * scores.miou, 2),
        aacc=100 * scores.aacc, macc=100 * scores.macc, per_class_iou=per_class, num_images=len(data),
        num_images_total=len(data), precision=precision, device=device, torch_version="2.13.0",
        repro_version="0.1.0", started=now, finished=now, seconds=1.0, images_per_second=float(len(data)),
        checkpoint_sha256="c" * 64, dataset_fingerprint="f" * 64,
    )


class ColourModel:
    """A network for the real engine that reads each pixel's class from its colour (the scenes'
    painting rule): near-perfect predictions, so a planted label fault is the only error."""

    def __new__(cls, name: str, protocol, num_classes: int):
        import torch

        from repro.inference.transforms import test_transform

        classes = list(SCENE_CLASSES[name])
        painted = scene_colours(num_classes)[classes].astype(np.uint8)  # (K, 3) BGR, as painted
        # each colour as the model sees it: a plain image of it through the test transform
        colours = torch.stack([test_transform(np.tile(c, (8, 8, 1)), protocol)[:, 0, 0] for c in painted])

        class _Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("colours", colours)
                self.anchor = torch.nn.Parameter(torch.zeros(1))  # the engine asks for a parameter's device

            def forward(self, x):
                distance = ((x[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(dim=2)  # (N, K, H, W)
                logits = torch.full((x.shape[0], num_classes, *x.shape[2:]), -1e4, dtype=x.dtype, device=x.device)
                logits[:, classes] = -distance + self.anchor
                return logits

        return _Net().eval()


ENGINE_PROTOCOL = {"upstream_block": "test", "resize": {"output_size": [48, 80], "keep_ratio": False},
                   "normalize": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
                   "mode": "whole", "crop_size": None, "stride": None, "scales": [1.0], "flip": True,
                   "flip_pairs": [], "probs_before_resize": False}


def engine_run(name: str, folder: Path, out: Path, *, save_predictions: Path | None = None,
               force: bool = False) -> Path:
    """A real `repro.engine` run of the colour-reading network over a scene dataset; returns the
    result file (with its evidence sidecar, and the prediction PNGs with `save_predictions`)."""
    from repro.engine import EngineOptions, EvalJob, run_job
    from repro.manifest import Protocol

    protocol = Protocol.model_validate(ENGINE_PROTOCOL)
    job = EvalJob(
        model_id=MODELS[name], protocol_name="single", protocol=protocol, dataset=open_dataset(name, folder, "val"),
        dataset_name=name, split="val", data_root=str(folder), class_names=DATASETS[name].class_names,
        build_model=lambda: ColourModel(name, protocol, DATASETS[name].num_classes), checkpoint_sha256="e" * 64,
    )
    options = EngineOptions(device="cpu", results=out, workers=0, save_predictions=save_predictions, force=force)
    return Path(out) / filename_of(run_job(job, options))


def build_example(out: Path) -> tuple[Path, Path]:
    """The README's worked example: a synthetic ADE20k row evaluated by the real engine, one of
    whose 20 label files was replaced by an unrelated one (`out/results`), and the same row on an
    intact copy of the dataset (`out/results-fixed`). Returns both result files."""
    broken = make_scene_dataset("ade20k", out / "data", n=20)
    corrupt_label("ade20k", broken, 13)
    intact = make_scene_dataset("ade20k", out / "data-fixed", n=20)  # same seed: the same scenes
    return (engine_run("ade20k", broken, out / "results", save_predictions=out / "predictions"),
            engine_run("ade20k", intact, out / "results-fixed", save_predictions=out / "predictions-fixed"))


if __name__ == "__main__":
    for path in build_example(Path(sys.argv[1])):
        print(path)
