"""`repro data check` / `repro data list` through Typer's test runner, and check_dataset itself."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import synthetic_data as sd
from repro.cli import app
from repro.datasets import check_dataset

runner = CliRunner(env={"COLUMNS": "200"})


def _check(*args):
    result = runner.invoke(app, ["data", "check", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def _errors(result):
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def test_good_mini_dataset_prints_a_summary(tmp_path):
    root = sd.make_vspw(tmp_path / "VSPW_480p", n_videos=2, frames=(3, 2))
    result = _check("vspw", "--root", root, "--allow-subset")
    assert result.exit_code == 0, result.output
    assert "VSPW" in result.output and "343" in result.output and "124/124" in result.output
    assert "partial dataset accepted" in result.output


def test_count_mismatch_is_an_error_without_allow_subset(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=3)
    result = _check("ade20k", "--root", root)
    assert result.exit_code == 1
    assert _errors(result) == [
        "error: ADE20k val has 3 images but the official split has 2000: the dataset is incomplete or its id "
        "list is wrong; re-extract the archive (or accept a partial dataset with --allow-subset)"
    ]


def test_unknown_dataset_and_split_are_usage_errors(tmp_path):
    result = _check("ade", "--root", tmp_path)
    assert result.exit_code == 2 and "did you mean ade20k" in result.output
    result = _check("ade20k", "--root", tmp_path, "--split", "test")
    assert result.exit_code == 2 and "no evaluation split 'test'" in result.output


def test_missing_root_and_default_root_from_data_root(tmp_path, monkeypatch):
    result = _check("lip", "--root", tmp_path / "nowhere")
    assert result.exit_code == 1 and "does not exist" in _errors(result)[0]
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    sd.make_data_root(tmp_path / "data", names=["lip"])
    result = _check("lip", "--allow-subset")
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "data" / "LIP") in result.output.replace("\n", "")


def test_missing_labels_and_images_are_listed_one_line_each(tmp_path):
    root = sd.make_pascalcontext59(tmp_path / "VOC2010", n_val=4)
    labels = sorted((root / "SegmentationClassContext").glob("2008_*2.png"))
    labels[0].unlink()
    labels[1].unlink()
    sorted((root / "JPEGImages").glob("2008_*2.jpg"))[-1].unlink()
    errors = _errors(_check("pascalcontext59", "--root", root, "--allow-subset"))
    assert len(errors) == 2
    assert errors[0].startswith("error: 1 of 4 PASCAL-Context-59 images are missing")
    assert errors[1].startswith("error: 2 of 4 PASCAL-Context-59 images have no label file")


def test_palette_labels_reported_once_with_a_count(tmp_path):
    root = sd.make_pascalcontext59(tmp_path / "VOC2010", n_val=3, palette=True)
    result = _check("pascalcontext59", "--root", root, "--allow-subset")
    errors = _errors(result)
    assert result.exit_code == 1 and len(errors) == 1
    assert "is a palette PNG" in errors[0] and "[3 of 3 sampled files]" in errors[0]


def test_colour_label_images(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=2)
    for path in (root / "ADEChallengeData2016/annotations/validation").glob("*.png"):
        Image.open(path).convert("RGB").save(path)
    errors = _errors(_check("ade20k", "--root", root, "--allow-subset"))
    assert len(errors) == 1 and "colour image" in errors[0]


def test_cityscapes_trainids_folder(tmp_path):
    root = sd.make_cityscapes(tmp_path / "CityScapes", n_val=2, label_kind="labelTrainIds")
    result = _check("cityscapes", "--root", root, "--allow-subset")
    errors = _errors(result)
    assert result.exit_code == 1 and len(errors) == 1
    assert "have no label file" in errors[0] and "holds trainIds" in errors[0]


def test_invalid_label_values_name_the_file(tmp_path):
    root = sd.make_voc(tmp_path / "VOC2012", n_val=2, palette=False)
    path = sorted((root / "SegmentationClass").glob("*.png"))[-1]
    values = np.array(Image.open(path))
    values[0, 0] = 38  # a palette-luminance value
    Image.fromarray(values).save(path)
    assert path.stem in (root / "ImageSets/Segmentation/val.txt").read_text()
    errors = _errors(_check("voc", "--root", root, "--allow-subset", "--split", "val"))
    assert len(errors) == 1 and str(path) in errors[0] and "{38}" in errors[0]


def test_missing_lists_are_errors_or_notes(tmp_path):
    root = sd.make_vspw(tmp_path / "VSPW_480p")
    (root / "val.txt").unlink()
    errors = _errors(_check("vspw", "--root", root, "--allow-subset"))
    assert len(errors) == 1 and "missing video list" in errors[0]
    root = sd.make_lip(tmp_path / "LIP", with_list=False)
    result = _check("lip", "--root", root, "--allow-subset")
    assert result.exit_code == 0 and "note: LIP: no id list val_id.txt" in result.output


def test_sample_zero_skips_the_label_pass(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=2)
    for path in (root / "ADEChallengeData2016/annotations/validation").glob("*.png"):
        Image.open(path).convert("RGB").save(path)
    assert _check("ade20k", "--root", root, "--allow-subset", "--sample", "0").exit_code == 0


def test_data_list_runs():
    result = runner.invoke(app, ["data", "list"])
    assert result.exit_code == 0 and "pascalcontext59" in result.output and "VSPW_480p" in result.output


DEEP = "a_rather_long_folder_name/" * 3


def test_data_list_in_a_pipe_is_plain_and_never_breaks_a_path(tmp_path):
    lip = sd.make_lip(tmp_path / DEEP / "LIP", n_val=1)
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["data", "list", "--dataset-root", f"lip={lip}"])
    assert result.exit_code == 0, result.output
    assert not set("│┃━─╭") & set(result.output)  # no boxes in a pipe, as `list` and `status`
    lines = result.output.splitlines()
    assert lines[1].split()[:3] == ["name", "dataset", "classes"]
    (row,) = [line for line in lines if line.startswith("lip ")]
    assert row.endswith(str(lip)) and " yes " in row  # whole, on its row, whatever COLUMNS says
    assert all(line == line.rstrip() for line in lines)


def test_data_list_on_an_80_column_terminal_puts_long_folders_on_their_own_lines(tmp_path, monkeypatch):
    from rich.console import Console

    import repro.cli.data

    monkeypatch.setattr(repro.cli.data, "console", Console(force_terminal=True, width=80))
    lip = sd.make_lip(tmp_path / DEEP / "LIP", n_val=1)
    result = runner.invoke(app, ["data", "list", "--dataset-root", f"lip={lip}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines if not line.startswith("  /")) <= 80
    assert f"  {lip}" in lines  # the folder whole, below its row


def test_data_list_formats(tmp_path):
    rows = json.loads(runner.invoke(app, ["data", "list", "--format", "json"]).output)
    lip = next(r for r in rows if r["name"] == "lip")
    assert lip["num_classes"] == 20 and lip["splits"] == {"val": 10000} and lip["present"] in ("yes", "no")
    tsv = runner.invoke(app, ["data", "list", "--format", "tsv"]).output.splitlines()
    assert tsv[0].split("\t")[0] == "name" and len(tsv) == 1 + len(rows)


# ---------------------------------------------------------------------------------------------
# check_dataset (API)


def test_check_dataset_result_and_summary(tmp_path):
    root = sd.make_cityscapes(tmp_path / "CityScapes", n_val=3, n_test=2)
    result = check_dataset("cityscapes", root, allow_subset=True)
    assert result == [] and result.ok
    by_split = {s.split: s for s in result.splits}
    assert (by_split["val"].count, by_split["val"].expected, by_split["val"].labels_sampled) == (3, 500, 3)
    assert (by_split["test"].count, by_split["test"].has_labels, by_split["test"].labels_sampled) == (2, False, 0)
    assert by_split["test"].images_sampled == 2
    strict = check_dataset("cityscapes", root, split="test")
    assert len(strict) == 1 and "1525" in strict[0] and [s.split for s in strict.splits] == ["test"]


def test_check_dataset_flags_labels_that_are_all_ignore(tmp_path):
    root = sd.make_ade20k(tmp_path / "ADE20k", n_val=2)
    for path in (root / "ADEChallengeData2016/annotations/validation").glob("*.png"):
        Image.fromarray(np.zeros((40, 60), np.uint8)).save(path)
    problems = check_dataset("ade20k", root, allow_subset=True)
    assert len(problems) == 1 and "every pixel of the 2 sampled" in problems[0]


def test_check_dataset_missing_split_folder(tmp_path):
    root = sd.make_cityscapes(tmp_path / "CityScapes", n_val=2, n_test=2)
    shutil.rmtree(root / "leftImg8bit" / "test")
    problems = check_dataset("cityscapes", root, allow_subset=True)
    assert len(problems) == 1 and "leftImg8bit/test" in problems[0]


@pytest.mark.parametrize("name", ["cocostuff10k", "voc"])
def test_check_dataset_on_mini_data_root(tmp_path, name):
    data = sd.make_data_root(tmp_path, names=[name])
    from repro.datasets import DATASETS

    assert check_dataset(name, data / DATASETS[name].folder, allow_subset=True) == []
