"""A dataset added the documented way works in every command: one spec (what a module
`repro/datasets/<name>.py` holds: facts, label rule, layout) and one registry line.

The toy dataset below is registered with that one line (through monkeypatch) and nothing else;
`repro data list`, `repro data check`, `repro eval --dry-run`, a real `repro eval` (a manifest
row for it, a deterministically filled checkpoint of a bundled architecture), `repro status`
and saved predictions then work on it, and the measured mIoU is the reference loop's.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from repro.cli import app
from repro.datasets.base import DatasetLayout, DatasetSpec, Entry, LabelRule, Located, read_id_list
from repro.datasets.registry import DATASETS
from repro.manifest import DEFAULT_PATH

runner = CliRunner(env={"COLUMNS": "200"})
BASE_ROW = "memorynetv2_ppm_resnet50os8_lip"  # a bundled architecture, small enough for a CPU test
MODEL = "toy_ppm_r50"
SIZE = (24, 32)  # (height, width) of every toy image


class ToyLayout(DatasetLayout):
    """<root>/images/<id>.png, <root>/labels/<id>.png, the split's ids in <root>/<split>.txt."""

    def label_name(self, sample_id: str) -> str:
        return f"{sample_id}.png"

    def locate(self, root: Path, split: str) -> Located:
        ids = read_id_list(root / f"{split}.txt")
        entries = [Entry(i, root / "images" / f"{i}.png", root / "labels" / self.label_name(i)) for i in ids]
        return Located(entries, root)


TOY = DatasetSpec(
    name="toyshapes",
    title="Toy Shapes",
    num_classes=3,
    class_names=("background", "square", "disc"),
    folder="ToyShapes",
    markers=(("images", "labels", "val.txt"),),
    splits={"val": 4},
    default_split="val",
    typical_image_size=SIZE,
    layout=ToyLayout(),
    rule=LabelRule(reader="cv2", num_classes=3, table=None),  # 255: ignored (outside 0..2)
    label_encoding="cv2 grayscale PNG; 0..2 classes, 255 ignored",
)


def _make_toy(folder: Path, count: int = 4) -> Path:
    """`count` seeded images with their labels: a square (1), a disc (2), an ignored border."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for index in range(count):
        label = np.zeros(SIZE, np.uint8)
        top, left = rng.integers(2, 10, size=2)
        label[top:top + 8, left:left + 8] = 1
        yy, xx = np.ogrid[: SIZE[0], : SIZE[1]]
        label[(yy - 12) ** 2 + (xx - 24) ** 2 < 25] = 2
        label[0, :] = 255
        image = rng.integers(0, 60, (*SIZE, 3), dtype=np.uint8) + (label[..., None] % 255) * 80
        cv2.imwrite(str(folder / "images" / f"toy_{index}.png"), image.astype(np.uint8))
        cv2.imwrite(str(folder / "labels" / f"toy_{index}.png"), label)
    (folder / "val.txt").write_text("".join(f"toy_{i}\n" for i in range(count)))
    return folder


def _manifest(path: Path) -> Path:
    """The bundled manifest reduced to one row evaluated on the toy dataset."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    row = next(e for e in raw["models"] if e["id"] == BASE_ROW)
    row.update(id=MODEL, aliases=[], dataset=TOY.name, eval_split="val", num_classes=TOY.num_classes,
               documented={"single": 50.0}, sha256=None)
    row["protocols"] = {"single": row["protocols"]["single"]}
    row["protocols"]["single"].update(resize={"output_size": list(SIZE), "keep_ratio": False}, flip_pairs=[])
    for optional in ("documented_conditions", "upstream_now"):
        row.pop(optional, None)
    raw["models"] = [row]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS, TOY.name, TOY)  # the one registry line
    monkeypatch.setenv("REPRO_MANIFEST", str(_manifest(tmp_path / "zoo.yaml")))
    for name, folder in (("REPRO_HOME", "home"), ("REPRO_DATA", "data"), ("REPRO_RESULTS", "results")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    root = _make_toy(tmp_path / "data" / TOY.folder)
    from repro.models import build_segmentor, fill_model

    model = fill_model(build_segmentor(MODEL)).eval()
    checkpoint = tmp_path / "toy.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"root": root, "checkpoint": checkpoint, "model": model, "tmp": tmp_path}


def _reference_miou(model, root: Path) -> float:
    """mIoU (percent) of upstream's test loop transcription over the toy split."""
    from repro.datasets.roots import open_dataset
    from repro.inference.reference import reference_predict
    from repro.inference.transforms import test_transform
    from repro.manifest import load_manifest

    protocol = load_manifest().get(MODEL).protocols["single"]
    dataset = open_dataset(TOY.name, root, "val")
    inter, union = np.zeros(TOY.num_classes), np.zeros(TOY.num_classes)
    for sample in dataset:
        x = test_transform(sample.image, protocol)
        pred = reference_predict(model, x, protocol, TOY.num_classes, output_size=sample.label.shape)
        pred = pred.argmax(0).numpy()
        valid = sample.label >= 0
        for c in range(TOY.num_classes):
            inter[c] += np.sum((pred == c) & (sample.label == c) & valid)
            union[c] += np.sum(((pred == c) | (sample.label == c)) & valid)
    with np.errstate(invalid="ignore"):
        return float(np.nanmean(np.where(union > 0, inter / union, np.nan)) * 100)


def test_a_dataset_added_with_one_spec_and_one_registry_line_runs_in_every_command(toy):
    listed = runner.invoke(app, ["data", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.stdout) if r["name"] == TOY.name)
    assert row["present"] == "yes" and row["folder"] == str(toy["root"]) and row["splits"] == {"val": 4}

    checked = runner.invoke(app, ["data", "check", "toyshapes"])  # layout, counts, sampled labels: no problem
    assert checked.exit_code == 0, checked.output
    assert "Toy Shapes at" in checked.stdout and "3/3" in checked.stdout  # every class seen in the labels

    base = ["eval", MODEL, "--checkpoint", str(toy["checkpoint"]), "--device", "cpu", "--workers", "0"]
    dry = runner.invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"dataset toyshapes val: 4 images at {toy['root']}" in dry.stdout
    assert "ready" in dry.stdout and "error" not in dry.output

    predictions = toy["tmp"] / "predictions"
    evaluated = runner.invoke(app, [*base, "--save-predictions", str(predictions)])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((toy["tmp"] / "results" / f"{MODEL}__single.json").read_text())
    assert result["status"] == "complete" and result["dataset"] == TOY.name and result["num_images"] == 4
    assert result["miou"] == pytest.approx(_reference_miou(toy["model"], toy["root"]), abs=1e-9)
    assert sorted(p.name for p in predictions.glob("*.png")) == [f"toy_{i}.png" for i in range(4)]

    status = runner.invoke(app, ["status", MODEL, "--format", "json"])
    assert status.exit_code == 0, status.output
    dataset = json.loads(status.stdout)["datasets"][0]
    assert dataset["dataset"] == TOY.name and dataset["state"] == "complete" and dataset["count"] == 4


def test_a_name_the_registry_does_not_hold_is_refused_by_the_manifest(tmp_path, monkeypatch):
    """The manifest checks a row's dataset against the registry as it is when it is read."""
    from repro.errors import ManifestError
    from repro.manifest import load_manifest

    monkeypatch.setenv("REPRO_MANIFEST", str(_manifest(tmp_path / "zoo.yaml")))
    with pytest.raises(ManifestError, match="field 'dataset': Input should be 'ade20k', .* or 'vspw'"):
        load_manifest()
