"""`--save-predictions`: one PNG per image in the dataset's own label numbering, equal pixel for
pixel to the argmax of the reference loop when read back through the dataset's label reading,
named as the dataset names the image's label file (the prediction folder lines up with the
ground-truth folder, for every dataset); `--paint` in the dataset's colours; kept by an
interrupted run; a foreign folder refused."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pytest
from synthetic_data import MAKERS
from test_cli_eval import MODEL, small_setup  # noqa: F401 - fixture
from test_evaluate import NORMALIZE, CountingDataset, options
from tiny_models import TinyConvNet
from typer.testing import CliRunner

from repro.datasets import DATASETS, open_dataset
from repro.datasets.base import read_prediction
from repro.inference.transforms import test_transform
from repro.datasets.registry import palette
from repro.engine import EvalJob, run_job
from repro.engine.predictions import OWNER_FILE
from repro.errors import ReproError
from repro.inference.reference import reference_predict
from repro.manifest import Protocol

PROTOCOL = Protocol(
    upstream_block="test", resize={"output_size": [40, 32], "keep_ratio": False}, normalize=NORMALIZE,
    mode="whole", crop_size=None, stride=None, scales=[1.0], flip=True, flip_pairs=[], probs_before_resize=False,
)


def _job(name: str, root: Path, dataset=None) -> EvalJob:
    spec = DATASETS[name]
    return EvalJob(
        model_id=f"tiny_{name}", protocol_name="flip", protocol=PROTOCOL,
        dataset=dataset if dataset is not None else open_dataset(name, root, spec.default_split),
        dataset_name=name, split=spec.default_split, data_root=str(root), class_names=spec.class_names,
        build_model=lambda: TinyConvNet(spec.num_classes), checkpoint_sha256="f" * 64,
    )


def _read_back(name: str, path: Path) -> np.ndarray:
    """A saved PNG read as the dataset reads its labels (COCO-Stuff's are .mat: mapped the same way)."""
    return read_prediction(path, DATASETS[name].rule, name)


def _pngs(folder: Path) -> list[str]:
    """The prediction PNGs under `folder`, relative (the painted ones under paint/ left out)."""
    relative = (p.relative_to(folder) for p in folder.rglob("*.png"))
    return sorted(r.as_posix() for r in relative if r.parts[0] != "paint")


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_saved_predictions_are_the_reference_argmax_in_the_datasets_numbering(tmp_path, name):
    root = MAKERS[name](tmp_path / name)
    job = _job(name, root)
    folder = tmp_path / "predictions"
    result = run_job(job, options(tmp_path, save_predictions=folder, paint=True))
    assert result.predictions_dir == str(folder.resolve())
    model, colours = TinyConvNet(DATASETS[name].num_classes), palette(name)
    for i, sample_id in enumerate(job.dataset.ids):
        sample = job.dataset[i]
        x = test_transform(sample.image, PROTOCOL)
        expected = reference_predict(model, x, PROTOCOL, DATASETS[name].num_classes,
                                     output_size=sample.image.shape[:2]).argmax(0).numpy()
        written = folder / DATASETS[name].prediction_name(sample_id)
        assert np.array_equal(_read_back(name, written), expected), sample_id
        painted = cv2.imread(str(folder / "paint" / DATASETS[name].prediction_name(sample_id)), cv2.IMREAD_COLOR)
        painted = painted[:, :, ::-1]
        assert np.array_equal(painted, colours[expected])


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_prediction_files_mirror_the_label_files_of_every_dataset(tmp_path, name):
    """Each prediction's path under the folder is its label file's path under the split's label
    folder (as a PNG): `diff -r`, or a script pairing files by name, lines the two folders up."""
    root = MAKERS[name](tmp_path / name)
    job = _job(name, root)
    folder = tmp_path / "predictions"
    run_job(job, options(tmp_path, save_predictions=folder, paint=True))
    label_folders, expected = set(), []
    for i, sample_id in enumerate(job.dataset.ids):
        label = job.dataset.label_path(i)
        name_of_label = PurePosixPath(DATASETS[name].prediction_name(sample_id))
        label_folder = label.parents[len(name_of_label.parts) - 1]
        assert label.relative_to(label_folder).with_suffix(".png").as_posix() == str(name_of_label), sample_id
        label_folders.add(label_folder)
        expected.append(str(name_of_label))
    assert len(label_folders) == 1  # one ground-truth folder, whatever the split's layout
    assert _pngs(folder) == sorted(expected) == _pngs(folder / "paint")
    # The label files on disk, listed as a tool would (a folder may hold other splits' too: COCO-Stuff)
    ground_truth, suffix = label_folders.pop(), job.dataset.label_path(0).suffix
    on_disk = {p.relative_to(ground_truth).with_suffix(".png").as_posix() for p in ground_truth.rglob(f"*{suffix}")}
    assert set(_pngs(folder)) <= on_disk


def test_prediction_names_follow_the_label_names():
    """The names the README states: VSPW's masks, Cityscapes' labelIds files, COCO-Stuff as PNG."""
    examples = {
        "vspw": ("127_-hIVCYO4C90/origin/00000041.jpg", "127_-hIVCYO4C90/mask/00000041.png"),
        "cityscapes": ("frankfurt/frankfurt_000000_000294_leftImg8bit",
                       "frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"),
        "ade20k": ("ADE_val_00000001", "ADE_val_00000001.png"),
        "cocostuff10k": ("COCO_train2014_000000000077", "COCO_train2014_000000000077.png"),
        "lip": ("100034_483681", "100034_483681.png"),
        "voc": ("2007_000033", "2007_000033.png"),
        "pascalcontext59": ("2008_000002", "2008_000002.png"),
    }
    assert set(examples) == set(DATASETS)
    for name, (sample_id, written) in examples.items():
        assert DATASETS[name].prediction_name(sample_id) == written, name


def test_ade20k_predictions_are_written_back_plus_one(tmp_path):
    root = MAKERS["ade20k"](tmp_path / "ade")
    job = _job("ade20k", root)
    run_job(job, options(tmp_path, save_predictions=tmp_path / "p"))
    raw = cv2.imread(str(tmp_path / "p" / DATASETS["ade20k"].prediction_name(job.dataset.ids[0])), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.min() >= 1 and raw.max() <= 150  # 0 is ADE20k's "other" (ignored)


def test_an_interrupted_run_keeps_its_pngs_and_the_resume_does_not_rewrite_them(tmp_path):
    root = MAKERS["lip"](tmp_path / "lip", n_val=5)
    folder = tmp_path / "p"
    crashing = CountingDataset(open_dataset("lip", root, "val"), crash_at=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(_job("lip", root, crashing), options(tmp_path, save_predictions=folder))
    ids = open_dataset("lip", root, "val").ids
    kept = {i: (folder / f"{i}.png").stat().st_mtime_ns for i in ids[:3]}
    assert not (folder / f"{ids[3]}.png").exists()
    resumed = CountingDataset(open_dataset("lip", root, "val"))
    run_job(_job("lip", root, resumed), options(tmp_path, save_predictions=folder))
    assert resumed.reads == [3, 4]
    assert {i: (folder / f"{i}.png").stat().st_mtime_ns for i in ids[:3]} == kept
    assert all((folder / f"{i}.png").is_file() for i in ids)


def test_a_folder_of_another_runs_predictions_is_refused_unless_forced(tmp_path):
    root = MAKERS["lip"](tmp_path / "lip")
    folder = tmp_path / "p"
    run_job(_job("lip", root), options(tmp_path / "a", save_predictions=folder))
    assert (folder / OWNER_FILE).is_file()
    other = _job("lip", root)
    other.checkpoint_sha256 = "0" * 64
    with pytest.raises(ReproError, match="holds the predictions of tiny_lip \\[flip\\].*--force"):
        run_job(other, options(tmp_path / "b", save_predictions=folder))
    run_job(other, options(tmp_path / "b", save_predictions=folder, force=True))
    loose = tmp_path / "loose"
    loose.mkdir()
    cv2.imwrite(str(loose / "x.png"), np.zeros((2, 2), np.uint8))  # PNGs of no known run
    with pytest.raises(ReproError, match="another run"):
        run_job(_job("lip", root), options(tmp_path / "c", save_predictions=loose))


def test_paint_without_save_predictions_is_one_error_line(tmp_path):
    from repro.cli import app

    result = CliRunner().invoke(app, ["eval", "memorynetv2_ppm_resnet50os8_lip", "--paint", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "--paint needs --save-predictions" in result.output


def test_repro_eval_save_predictions_and_paint(small_setup):  # noqa: F811 - fixture
    from repro.cli import app
    from repro.results.files import read_result

    folder = small_setup["out"].parent / "pngs"
    args = ["eval", MODEL, "--protocol", "single", "--checkpoint", str(small_setup["checkpoint"]), "--data-root",
            str(small_setup["data"]), "--limit", "2", "--device", "cpu", "--workers", "0", "--allow-subset",
            "--results", str(small_setup["out"]), "--save-predictions", str(folder), "--paint"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ids = open_dataset("lip", small_setup["data"] / "LIP", "val").ids[:2]
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{i}.png" for i in ids)
    assert sorted(p.name for p in (folder / "paint").glob("*.png")) == sorted(f"{i}.png" for i in ids)
    written = read_result(next(small_setup["out"].glob(f"{MODEL}__single*.json")))
    assert written.predictions_dir == str(folder.resolve())
