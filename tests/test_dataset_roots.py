"""Where datasets are found: one resolution (repro.datasets.roots.resolve_dataset_root) for every command.

Order: --dataset-root NAME=PATH > $REPRO_DATA_<NAME> > --data-root > $REPRO_DATA > <cache>/data;
a data root may hold the dataset folders (any names) or be one dataset's own folder.
"""

from __future__ import annotations

import json
import zipfile

from pathlib import Path

import pytest
from typer.testing import CliRunner

import synthetic_data as sd
from repro.cli import app
from repro.datasets import DATASETS, check_dataset
from repro.datasets.roots import looks_like_dataset, parse_dataset_roots, resolve_dataset_root
from repro.engine.options import EngineOptions
from repro.errors import ReproError
from repro.paths import results_dir

runner = CliRunner(env={"COLUMNS": "200"})

# Each dataset in every layout the readers accept (the synthetic makers write the real ones).
LAYOUTS = {
    "ade20k": lambda root: sd.make_ade20k(root),
    "ade20k-official": lambda root: sd.make_ade20k(root, official=True),
    "cityscapes": lambda root: sd.make_cityscapes(root),
    "cocostuff10k": lambda root: sd.make_cocostuff10k(root),
    "cocostuff10k-nested": lambda root: sd.make_cocostuff10k(root, subfolder=True),
    "lip": lambda root: sd.make_lip(root),
    "lip-official": lambda root: sd.make_lip(root, official=True),
    "voc": lambda root: sd.make_voc(root),
    "pascalcontext59": lambda root: sd.make_pascalcontext59(root),
    "vspw": lambda root: sd.make_vspw(root),
}


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No dataset variables from the machine; the cache in tmp."""
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "cache"))
    for name in ("REPRO_DATA", "REPRO_RESULTS", *(f"REPRO_DATA_{n.upper()}" for n in DATASETS)):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _lip_markers(folder: Path) -> Path:
    """The cheapest folder that looks like LIP (resolution only looks at the layout)."""
    for sub in ("val_images", "val_segmentations"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_is_recognised_whatever_the_folder_name(clean_env, layout):
    name = layout.split("-")[0]
    folder = LAYOUTS[layout](clean_env / "holder" / "my_copy")
    assert looks_like_dataset(name, folder)
    assert [other for other in DATASETS if looks_like_dataset(other, folder)] == [name]
    # The data root is the dataset's own folder, or holds it under any name.
    assert resolve_dataset_root(name, data_root=folder) == folder
    assert resolve_dataset_root(name, data_root=clean_env / "holder") == folder
    assert check_dataset(name, folder, allow_subset=True) == []  # what was found is usable


def test_order_of_the_sources(clean_env, monkeypatch):
    roots = {key: _lip_markers(clean_env / key) for key in ("option", "env", "data_root", "repro_data")}
    _lip_markers(clean_env / "cache" / "data" / "LIP")
    assert resolve_dataset_root("lip") == clean_env / "cache" / "data" / "LIP"
    monkeypatch.setenv("REPRO_DATA", str(clean_env / "repro_data"))
    assert resolve_dataset_root("lip") == roots["repro_data"]
    assert resolve_dataset_root("lip", data_root=roots["data_root"]) == roots["data_root"]
    monkeypatch.setenv("REPRO_DATA_LIP", str(roots["env"]))
    assert resolve_dataset_root("lip", data_root=roots["data_root"]) == roots["env"]
    assert resolve_dataset_root("LIP", roots["data_root"], {"lip": roots["option"]}) == roots["option"]
    assert resolve_dataset_root("ade20k", roots["data_root"]) == roots["data_root"] / "ADE20k"  # others unaffected


def test_canonical_folder_first_and_nothing_found_names_the_place(clean_env):
    data = clean_env / "data"
    other = _lip_markers(data / "my_lip")
    assert resolve_dataset_root("lip", data) == other
    canonical = _lip_markers(data / "LIP")
    assert resolve_dataset_root("lip", data) == canonical
    assert resolve_dataset_root("ade20k", data) == data / "ADE20k"  # where fetch would put it


def test_a_broken_canonical_folder_is_returned_for_the_checks_to_name(clean_env):
    data = clean_env / "data"
    (data / "LIP").mkdir(parents=True)
    _lip_markers(data / "elsewhere")
    assert resolve_dataset_root("lip", data) == data / "LIP"


def test_two_candidate_folders_is_an_error_naming_both(clean_env):
    data = clean_env / "data"
    first, second = _lip_markers(data / "lip_a"), _lip_markers(data / "lip_b")
    with pytest.raises(ReproError) as err:
        resolve_dataset_root("lip", data)
    message = str(err.value)
    assert str(first) in message and str(second) in message and "--dataset-root lip=PATH" in message
    assert "\n" not in message


def test_explicit_root_holding_the_folder_is_accepted(clean_env):
    lip = _lip_markers(clean_env / "shared" / "LIP")
    assert resolve_dataset_root("lip", overrides={"lip": clean_env / "shared"}) == lip
    assert resolve_dataset_root("lip", overrides={"lip": clean_env / "nowhere"}) == clean_env / "nowhere"


def test_parse_dataset_roots(tmp_path):
    assert parse_dataset_roots(["LIP=/data/my_lip", "ade20k = /x/ade "]) == {
        "lip": Path("/data/my_lip"),
        "ade20k": Path("/x/ade"),
    }
    assert parse_dataset_roots(None) == {}
    for bad, words in (("lip", "NAME=PATH"), ("=/x", "NAME=PATH"), ("lip=", "NAME=PATH"), ("lipp=/x", "did you mean lip")):
        with pytest.raises(ReproError) as err:
            parse_dataset_roots([bad])
        assert words in str(err.value) and err.value.exit_code == 2


def test_engine_options_carry_the_dataset_roots_to_the_plan_and_the_jobs(clean_env, monkeypatch):
    """--dataset-root travels in EngineOptions (no process-wide state): the plan and build_job
    read it from the options, and a launched job gets it in its pickled options, made absolute."""
    import pickle

    from repro.planning.plan import inspect_dataset

    monkeypatch.chdir(clean_env)
    mine = sd.make_lip(clean_env / "mine", n_val=2)
    options = EngineOptions(dataset_roots={"lip": Path("mine")})
    assert inspect_dataset("lip", "val", options.data_root, options.dataset_roots).root == "mine"
    assert inspect_dataset("lip", "val").root == str(clean_env / "cache" / "data" / "LIP")  # nothing left behind
    sent = pickle.loads(pickle.dumps(options.absolute()))  # what the launcher hands to run_one
    assert sent.dataset_roots == {"lip": str(mine)}
    info = inspect_dataset("lip", "val", sent.data_root, sent.dataset_roots)
    assert info.root == str(mine) and info.images == 2


def test_results_dir(clean_env, monkeypatch):
    assert results_dir() == clean_env / "cache" / "results"
    monkeypatch.setenv("REPRO_RESULTS", str(clean_env / "res"))
    assert results_dir() == clean_env / "res"
    assert results_dir(clean_env / "given") == clean_env / "given"


# ---------------------------------------------------------------------------------------------
# The same options in every command


def test_data_check_with_data_root_as_the_dataset_folder(clean_env, monkeypatch):
    lip = sd.make_lip(clean_env / "my_lip", n_val=2)
    for args in (["--data-root", str(lip)], ["--dataset-root", f"lip={lip}"], ["--data-root", str(clean_env)]):
        result = runner.invoke(app, ["data", "check", "lip", "--allow-subset", *args])
        assert result.exit_code == 0, result.output
        assert f"LIP at {lip}" in result.output
    monkeypatch.setenv("REPRO_DATA_LIP", str(lip))
    assert runner.invoke(app, ["data", "check", "LIP", "--allow-subset"]).exit_code == 0


def test_data_list_shows_where_each_dataset_is_found(clean_env):
    lip = sd.make_lip(clean_env / "data" / "parsing", n_val=1)
    result = runner.invoke(app, ["data", "list", "--data-root", str(clean_env / "data")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[2:]}  # a pipe: one plain line each
    assert rows["lip"].endswith(str(lip)) and " yes " in rows["lip"]
    assert rows["ade20k"].endswith(str(clean_env / "data" / "ADE20k")) and " no " in rows["ade20k"]


def test_bad_dataset_root_option_is_one_line_exit_2(clean_env):
    for command in (["data", "check", "lip"], ["data", "list"], ["fetch", "--dataset", "lip"], ["eval", "x"]):
        result = runner.invoke(app, [*command, "--dataset-root", "lip"])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.strip() == "error: --dataset-root takes NAME=PATH (e.g. lip=/data/my_lip), got 'lip'"


def test_eval_uses_the_same_resolution(clean_env, monkeypatch):
    checkpoint = clean_env / "any.pth"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # a zip, as torch.save writes; not read before the dataset is found
        archive.writestr("archive/data.pkl", b"")
    monkeypatch.setenv("REPRO_DATA_LIP", str(clean_env / "from_env"))
    base = ["eval", "memorynetv2_upernet_resnet101os8_lip", "--protocol", "single", "--checkpoint", str(checkpoint),
            "--device", "cpu", "--results", str(clean_env / "out")]
    result = runner.invoke(app, base)
    assert result.exit_code != 0 and str(clean_env / "from_env") in result.stderr
    result = runner.invoke(app, [*base, "--dataset-root", f"lip={clean_env / 'from_option'}"])
    assert result.exit_code != 0 and str(clean_env / "from_option") in result.stderr
    assert str(clean_env / "from_env") not in result.stderr


def test_one_line_for_a_missing_dataset_folder_in_every_command(clean_env):
    """The plan, `repro eval`, the engine, `repro status` and `repro data check` name a missing
    dataset folder with the same line (repro.datasets.roots.missing_dataset_message)."""
    from repro.datasets import open_dataset
    from repro.datasets.roots import missing_dataset_message
    from repro.engine.job import build_job
    from repro.errors import DatasetError

    model, missing = "memorynetv2_upernet_resnet101os8_lip", clean_env / "nowhere"
    line = missing_dataset_message("lip", missing)
    assert line == (f"dataset folder {missing} does not exist; fetch it with `repro fetch --dataset lip` "
                    "or pass --data-root / --dataset-root lip=PATH")
    checkpoint = clean_env / "any.pth"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # found, not read: the dataset is looked at first
        archive.writestr("archive/data.pkl", b"")
    where = ["--dataset-root", f"lip={missing}"]

    with pytest.raises(DatasetError) as opened:
        open_dataset("lip", missing)
    with pytest.raises(DatasetError) as built:
        build_job(model, "single", EngineOptions(checkpoint=checkpoint, dataset_roots={"lip": missing}))
    evaluated = runner.invoke(app, ["eval", model, "--tta", "single", "--checkpoint", str(checkpoint), *where])
    planned = runner.invoke(app, ["eval", model, "--tta", "single", "--dry-run", "--format", "json", *where])
    status = runner.invoke(app, ["status", model, "--format", "json", *where])
    checked = runner.invoke(app, ["data", "check", "lip", *where])
    assert str(opened.value) == str(built.value) == line
    assert evaluated.exit_code == 1 and evaluated.stderr.strip() == f"error: {line}"
    assert line in json.loads(planned.stdout)["runs"][0]["blocked"]
    assert json.loads(status.stdout)["datasets"][0]["detail"] == line
    assert checked.exit_code == 1 and f"error: {line}" in checked.stderr.splitlines()
