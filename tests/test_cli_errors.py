"""A sweep of bad inputs through the whole CLI.

Every case must end with a non-zero exit code and either ONE `error: ...` line (a ReproError
turned into text by the app) or Click/Typer's usage error for a bad flag; never a traceback or an
exception escaping the app, and never a half-written file (result, report, cached checkpoint).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from fetch_support import checkpoint_bytes, leftovers
from synthetic_data import make_lip
from typer.testing import CliRunner

from repro.cli import app
from repro.manifest import load_manifest

runner = CliRunner(env={"COLUMNS": "200"})

LIP_MODEL = "memorynetv2_ppm_resnet50os8_lip"  # protocols: single only
ADE_MODEL = "memorynetv2_ppm_resnet50os8_ade20k"  # same architecture, 150 classes
TYPO = "memorynetv2_ppm_resnet50os8_lipp"  # one letter off LIP_MODEL


# ---------------------------------------------------------------------------------------------
# Shared checks


def _escaped(result) -> BaseException | None:
    """An exception that escaped the app (CliRunner swallows it; a real shell shows a traceback)."""
    if result.exception is None or isinstance(result.exception, SystemExit):
        return None
    return result.exception


def assert_one_line_error(result, *, exit_code: int = 1, contains: tuple[str, ...] = ()) -> str:
    """Exit code as given; the whole output is one `error: ...` line; returns that line."""
    assert _escaped(result) is None, f"exception escaped the CLI: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{result.output}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert result.stdout.strip() == "", "the error belongs on stderr"
    for text in contains:
        assert text in line, f"{text!r} not in {line!r}"
    return line


def assert_usage_error(result, option: str) -> None:
    """A usage error (exit 2): one `error:` line naming the offending option and where the help is."""
    line = assert_one_line_error(result, exit_code=2, contains=(option,))
    assert line.endswith("--help`)") and "╭" not in result.output, line


def files_under(folder: Path) -> list[str]:
    """Every file under `folder` (hidden ones included), relative; [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# Fixtures: an isolated environment, a tiny LIP split, tiny and real checkpoints


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No cached checkpoints, no data root, the bundled manifest, a single process."""
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "no-data"))
    for name in ("REPRO_MANIFEST", "REPRO_MIRROR", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default --output 'results' lands in tmp


@pytest.fixture(scope="module")
def lip_data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_lip(root / "LIP", n_val=2, size=(40, 56))
    return root


@pytest.fixture(scope="module")
def small_lip_checkpoint(tmp_path_factory) -> Path:
    """A valid torch file with LIP's class count (not a full model; enough to pass the file checks)."""
    path = tmp_path_factory.mktemp("ckpt") / "small_lip.pth"
    path.write_bytes(checkpoint_bytes(20, plusplus=True))
    return path


@pytest.fixture(scope="module")
def ade20k_checkpoint(tmp_path_factory) -> Path:
    """The real state dict of the same architecture trained for ADE20k (150 classes)."""
    from repro.models import build_segmentor

    path = tmp_path_factory.mktemp("ckpt") / "ade20k_ppm.pth"
    torch.save({"model": build_segmentor(ADE_MODEL).state_dict()}, path)
    return path


def eval_args(*extra: str, output: Path) -> list[str]:
    # --allow-subset: the synthetic LIP has 2 of the official 10000 images
    return ["eval", LIP_MODEL, "--device", "cpu", "--workers", "0", "--allow-subset", "--results", str(output), *extra]


# ---------------------------------------------------------------------------------------------
# Unknown model ids: exit 2 with a suggestion


@pytest.mark.parametrize(
    "command",
    [
        ["info", TYPO],
        ["eval", TYPO, "--device", "cpu"],
        ["fetch", TYPO, "--weights-only"],
        ["report", TYPO, "--results", "{results}"],
    ],
    ids=["info", "eval", "fetch", "report"],
)
def test_unknown_model_id_exits_2_with_did_you_mean(command, tmp_path):
    results = tmp_path / "results"
    results.mkdir()  # report: an existing (empty) folder, so the id is what is wrong
    args = [a.format(results=results) for a in command]
    line = assert_one_line_error(runner.invoke(app, args), exit_code=2)
    assert line.startswith(f"error: unknown model id '{TYPO}'")
    assert f"did you mean {LIP_MODEL}" in line
    assert files_under(tmp_path / "home") == []  # fetch downloaded nothing
    assert files_under(results) == []


def test_unknown_id_without_close_match_points_at_list():
    line = assert_one_line_error(runner.invoke(app, ["info", "zzzz"]), exit_code=2)
    assert "repro list" in line


# ---------------------------------------------------------------------------------------------
# eval: checkpoints


def test_eval_without_cached_checkpoint_says_to_fetch(tmp_path, lip_data_root):
    out = tmp_path / "out"
    result = runner.invoke(app, eval_args("--data-root", str(lip_data_root), output=out))
    assert_one_line_error(result, contains=(f"repro fetch {LIP_MODEL}",))
    assert files_under(out) == []


def test_eval_checkpoint_path_that_does_not_exist(tmp_path, lip_data_root):
    out = tmp_path / "out"
    missing = tmp_path / "nowhere.pth"
    result = runner.invoke(app, eval_args("--checkpoint", str(missing), "--data-root", str(lip_data_root), output=out))
    assert_one_line_error(result, contains=(str(missing), "does not exist"))
    assert files_under(out) == []


def test_eval_truncated_checkpoint(tmp_path, lip_data_root):
    out = tmp_path / "out"
    whole = checkpoint_bytes(20, plusplus=True, padding=4096)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole[: len(whole) // 2])
    torch.load(io.BytesIO(whole), weights_only=True)  # the untruncated bytes are a fine checkpoint
    result = runner.invoke(app, eval_args("--checkpoint", str(truncated), "--data-root", str(lip_data_root), output=out))
    assert_one_line_error(result, contains=(str(truncated), "truncated"))
    assert files_under(out) == []


def test_eval_text_file_as_checkpoint(tmp_path, lip_data_root):
    out = tmp_path / "out"
    text = tmp_path / "weights.pth"
    text.write_text("<html>404 Not Found</html>\n")  # what a failed download often leaves
    result = runner.invoke(app, eval_args("--checkpoint", str(text), "--data-root", str(lip_data_root), output=out))
    assert_one_line_error(result, contains=(str(text), "not a PyTorch checkpoint"))
    assert files_under(out) == []


def test_eval_checkpoint_of_another_dataset(tmp_path, lip_data_root, ade20k_checkpoint):
    out = tmp_path / "out"
    result = runner.invoke(
        app, eval_args("--checkpoint", str(ade20k_checkpoint), "--data-root", str(lip_data_root), output=out)
    )
    line = assert_one_line_error(result)
    assert "150 classes" in line and "expects 20" in line, line
    assert files_under(out) == []


def test_eval_checkpoint_with_several_models(tmp_path, small_lip_checkpoint):
    other = "memorynetv2_fcn_resnet50os8_lip"
    result = runner.invoke(
        app, ["eval", LIP_MODEL, other, "--checkpoint", str(small_lip_checkpoint), "--results", str(tmp_path / "out")]
    )
    assert_one_line_error(result, contains=("--checkpoint",))
    assert files_under(tmp_path / "out") == []


# ---------------------------------------------------------------------------------------------
# eval: datasets


def test_eval_missing_dataset_folder(tmp_path, small_lip_checkpoint):
    out = tmp_path / "out"
    empty_root = tmp_path / "empty-data"
    empty_root.mkdir()
    result = runner.invoke(app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(empty_root), output=out))
    assert_one_line_error(result, contains=(str(empty_root / "LIP"), "repro fetch --dataset lip"))
    assert files_under(out) == []


def test_eval_dataset_in_the_wrong_layout(tmp_path, small_lip_checkpoint):
    out = tmp_path / "out"
    data_root = tmp_path / "data"
    # LIP images without the segmentation folder (e.g. only the image archive was unpacked)
    make_lip(data_root / "LIP", n_val=2, size=(40, 56))
    for label in (data_root / "LIP" / "val_segmentations").iterdir():
        label.unlink()
    (data_root / "LIP" / "val_segmentations").rmdir()
    result = runner.invoke(app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(data_root), output=out))
    assert_one_line_error(result, contains=("LIP",))
    assert files_under(out) == []


def test_eval_dataset_folder_that_is_a_file(tmp_path, small_lip_checkpoint):
    out = tmp_path / "out"
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "LIP").write_text("not a folder")
    result = runner.invoke(app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(data_root), output=out))
    assert_one_line_error(result, contains=("LIP",))
    assert files_under(out) == []


# ---------------------------------------------------------------------------------------------
# eval: failures while images are evaluated (a tiny stand-in network: no real forward pass)


class ModelBuilds:
    """Replaces the bundled segmentor with TinyConvNet(20) and counts how often one is built."""

    def __init__(self):
        self.count = 0

    def load(self, model_id, checkpoint, variant=None, **kwargs):
        from tiny_models import TinyConvNet

        self.count += 1
        return TinyConvNet(20)


@pytest.fixture
def tiny_model(monkeypatch) -> ModelBuilds:
    import repro.models

    builds = ModelBuilds()
    monkeypatch.setattr(repro.models, "load_segmentor", builds.load)
    return builds


def _lip_copy(tmp_path: Path, n_val: int = 3) -> tuple[Path, list[str]]:
    data_root = tmp_path / "data"
    make_lip(data_root / "LIP", n_val=n_val, size=(40, 56))
    ids = (data_root / "LIP" / "val_id.txt").read_text().split()
    return data_root, ids


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error")]


def test_eval_unreadable_image_mid_run(tmp_path, small_lip_checkpoint, tiny_model):
    out = tmp_path / "out"
    data_root, ids = _lip_copy(tmp_path)
    broken = data_root / "LIP" / "val_images" / f"{ids[1]}.jpg"
    broken.write_bytes(broken.read_bytes()[:20])  # a truncated JPEG
    result = runner.invoke(
        app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(data_root), output=out)
    )
    assert _escaped(result) is None and "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and errors[0].startswith("error: ") and str(broken) in errors[0], result.output
    assert tiny_model.count == 1
    # no result; only the resumable progress state (written atomically, no temporary file) and the
    # run lock's OS lock file, which stays by design (its holder record is gone with the run)
    kept = [f for f in files_under(out) if not f.startswith(".progress/")]
    assert all(f.startswith(".locks/") and f.endswith(".lock") for f in kept), kept
    assert all(f.endswith((".pt", ".lock")) for f in files_under(out))


def test_eval_label_of_the_wrong_size(tmp_path, small_lip_checkpoint, tiny_model):
    import numpy as np
    from PIL import Image

    out = tmp_path / "out"
    data_root, ids = _lip_copy(tmp_path, n_val=2)
    label = data_root / "LIP" / "val_segmentations" / f"{ids[0]}.png"
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(label)  # half the image size
    result = runner.invoke(
        app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(data_root), output=out)
    )
    assert _escaped(result) is None and "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    errors = _error_lines(result)
    assert len(errors) == 1 and "20x28" in errors[0] and "40x56" in errors[0], result.output
    assert [f for f in files_under(out) if not f.startswith(".progress/")] == []


def test_eval_output_that_is_a_file_fails_before_evaluating(tmp_path, lip_data_root, small_lip_checkpoint, tiny_model):
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me\n")
    result = runner.invoke(
        app, eval_args("--checkpoint", str(small_lip_checkpoint), "--data-root", str(lip_data_root), output=not_a_folder)
    )
    assert not_a_folder.read_text() == "keep me\n"
    assert result.exit_code == 1 and _escaped(result) is None and "Traceback" not in result.output
    assert tiny_model.count == 0, "the model was built (and the images evaluated) before the bad --output was noticed"
    line = assert_one_line_error(result, contains=(str(not_a_folder),))
    assert ".progress" not in line and "Error:" not in line


# ---------------------------------------------------------------------------------------------
# eval: options


def test_eval_tta_flip_on_a_row_without_flip(tmp_path):
    assert "flip" not in load_manifest().get(LIP_MODEL).protocols  # the premise of this case
    out = tmp_path / "out"
    result = runner.invoke(app, eval_args("--protocol", "flip", output=out))
    assert_one_line_error(result, contains=("no 'flip' protocol", "--protocol documented"))
    assert files_under(out) == []


def test_eval_unknown_precision_is_a_usage_error(tmp_path):
    result = runner.invoke(app, eval_args("--precision", "fp8", output=tmp_path / "out"))
    assert_usage_error(result, "--precision")
    assert "fp8" in result.output


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_eval_non_positive_limit_is_a_usage_error(limit, tmp_path):
    result = runner.invoke(app, eval_args("--limit", limit, output=tmp_path / "out"))
    assert_usage_error(result, "--limit")


def test_eval_limit_not_a_number_is_a_usage_error(tmp_path):
    result = runner.invoke(app, eval_args("--limit", "all", output=tmp_path / "out"))
    assert_usage_error(result, "--limit")


@pytest.mark.parametrize("shard", ["3/2", "0/2", "1/0", "one/two", "2"])
def test_eval_bad_shard(shard, tmp_path):
    result = runner.invoke(app, ["eval", "--all", "--shard", shard, "--results", str(tmp_path / "out")])
    assert_one_line_error(result, contains=("--shard",))
    assert files_under(tmp_path / "out") == []


def test_eval_unknown_tta_is_a_usage_error(tmp_path):
    assert_usage_error(runner.invoke(app, eval_args("--protocol", "multiscale", output=tmp_path / "out")), "--protocol")


def test_eval_ids_and_all_together(tmp_path):
    result = runner.invoke(app, ["eval", LIP_MODEL, "--all", "--results", str(tmp_path / "out")])
    assert_one_line_error(result, contains=("--all",))


def test_eval_nothing_named(tmp_path):
    assert_one_line_error(runner.invoke(app, ["eval", "--results", str(tmp_path / "out")]), contains=("repro list",))


def test_eval_bad_device(tmp_path, lip_data_root, small_lip_checkpoint):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["eval", LIP_MODEL, "--device", "tpu", "--checkpoint", str(small_lip_checkpoint),
         "--data-root", str(lip_data_root), "--results", str(out)],
    )
    assert_one_line_error(result, contains=("bad device 'tpu'",))
    assert files_under(out) == []


# ---------------------------------------------------------------------------------------------
# report


def test_report_missing_results_folder(tmp_path):
    missing = tmp_path / "never-evaluated"
    report_file = tmp_path / "report.md"
    result = runner.invoke(app, ["report", "--results", str(missing), "--output", str(report_file)])
    assert_one_line_error(result, contains=(str(missing), "does not exist"))
    assert not report_file.exists() and files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"model_id": "memorynetv2_ppm_resnet50os8_lip", "protocol": "sin',
         "(not valid JSON, truncated or damaged: EOF while parsing a string at line 1 column 64)"),
        ("", "(the file is empty)"),
        ('{"model_id": 3}', "(model_id: Input should be a valid string; 15 more problems)"),
        ("[]", "(the whole file: Input should be an object)"),
    ],
    ids=["truncated", "empty", "wrong-fields", "not-an-object"],
)
def test_report_corrupt_result_file(content, why, tmp_path):
    """A damaged result file is named in one note and skipped; the report is made of the rest."""
    results = tmp_path / "results"
    results.mkdir()
    corrupt = results / f"{LIP_MODEL}__single.json"
    corrupt.write_text(content)
    report_file = tmp_path / "report.md"
    result = runner.invoke(app, ["report", "--results", str(results), "--output", str(report_file), "--all-rows"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    notes = [line for line in result.output.splitlines() if corrupt.name in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "not a repro result file" in notes[0], result.output
    assert notes[0].endswith(why), notes[0]  # what is wrong with it, not pydantic's "validation error"
    assert report_file.is_file() and LIP_MODEL in report_file.read_text()
    assert sorted(files_under(tmp_path)) == ["report.md", f"results/{corrupt.name}"]  # input untouched
    assert corrupt.read_text() == content


def test_report_results_path_is_a_file(tmp_path):
    not_a_folder = tmp_path / "results.json"
    not_a_folder.write_text(json.dumps({}))
    result = runner.invoke(app, ["report", "--results", str(not_a_folder)])
    assert_one_line_error(result, contains=(str(not_a_folder), "not a folder"))


def test_report_unknown_format_is_a_usage_error(tmp_path):
    (tmp_path / "results").mkdir()
    assert_usage_error(runner.invoke(app, ["report", "--results", str(tmp_path / "results"), "--format", "pdf"]), "--format")


def test_report_negative_tolerance(tmp_path):
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["report", "--results", str(tmp_path / "results"), "--tolerance", "-1"])
    assert_one_line_error(result, contains=("--tolerance",))


def test_report_bad_plot_extension_writes_nothing(tmp_path):
    (tmp_path / "results").mkdir()
    report_file, plot = tmp_path / "report.md", tmp_path / "deltas.gif"
    result = runner.invoke(
        app, ["report", "--results", str(tmp_path / "results"), "--output", str(report_file), "--plot", str(plot)]
    )
    assert_one_line_error(result, contains=("--plot",))
    assert not report_file.exists() and not plot.exists()


# ---------------------------------------------------------------------------------------------
# data check


@pytest.mark.parametrize("name", ["lipp", "pascal_context", "ImageNet"])
def test_data_check_unknown_dataset(name):
    line = assert_one_line_error(runner.invoke(app, ["data", "check", name]), exit_code=2)
    assert line.startswith(f"error: unknown dataset '{name}'")
    assert "lip" in line  # the valid names are listed


def test_data_check_suggests_the_close_name():
    line = assert_one_line_error(runner.invoke(app, ["data", "check", "lipp"]), exit_code=2)
    assert "did you mean lip" in line


def test_data_check_missing_folder(tmp_path):
    missing = tmp_path / "nowhere" / "LIP"
    result = runner.invoke(app, ["data", "check", "lip", "--root", str(missing)])
    assert _escaped(result) is None and "Traceback" not in result.output
    assert result.exit_code == 1
    errors = _error_lines(result)  # one line per problem (plus a summary line without 'error')
    assert len(errors) == 1 and str(missing) in errors[0] and "repro fetch --dataset lip" in errors[0], result.output
    assert not missing.exists()


def test_data_check_unknown_split(lip_data_root):
    result = runner.invoke(app, ["data", "check", "lip", "--split", "test", "--root", str(lip_data_root / "LIP")])
    assert_one_line_error(result, exit_code=2, contains=("'test'", "val"))


# ---------------------------------------------------------------------------------------------
# A broken manifest ($REPRO_MANIFEST)


@pytest.mark.parametrize(
    "content,expected",
    [(None, "manifest not found"), ("models: [\n", "not valid YAML"), ("models:\n  - id: 3\n", "schema_version")],
    ids=["missing", "bad-yaml", "bad-schema"],
)
def test_broken_manifest(content, expected, tmp_path, monkeypatch):
    path = tmp_path / "zoo.yaml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("REPRO_MANIFEST", str(path))
    for command in (["list"], ["info", LIP_MODEL], ["eval", LIP_MODEL]):
        assert_one_line_error(runner.invoke(app, command), contains=(str(path), expected) if content else (expected,))


# ---------------------------------------------------------------------------------------------
# fetch


def test_fetch_checkpoint_from_a_missing_file(tmp_path):
    missing = tmp_path / "downloads" / "memorynet.pth"
    result = runner.invoke(app, ["fetch", LIP_MODEL, "--weights-only", "--from", str(missing), "--no-progress"])
    assert_one_line_error(result, contains=(str(missing),))
    cached = files_under(tmp_path / "home" / "checkpoints")
    assert cached == [], cached  # no checkpoint, no .part (a lock file under .locks is fine)
    assert leftovers(tmp_path / "home") == []
    assert not (tmp_path / "home" / "checkpoints.lock.json").exists()  # no digest recorded


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_fetch_checkpoint_from_a_file_that_is_not_one(kind, tmp_path):
    source = tmp_path / "downloads" / "memorynet.pth"
    source.parent.mkdir()
    if kind == "text":
        source.write_text("<html>rate limited</html>\n")
    else:
        whole = checkpoint_bytes(20, plusplus=True, padding=4096)
        source.write_bytes(whole[: len(whole) // 2])
    before = source.read_bytes()
    result = runner.invoke(app, ["fetch", LIP_MODEL, "--weights-only", "--from", str(source), "--no-progress"])
    assert_one_line_error(result, contains=(str(source), LIP_MODEL))
    assert files_under(tmp_path / "home" / "checkpoints") == []  # nothing imported, no .part
    assert not (tmp_path / "home" / "checkpoints.lock.json").exists()
    assert source.read_bytes() == before  # the user's file is left alone


def test_fetch_dataset_from_a_missing_path(tmp_path):
    missing = tmp_path / "downloads" / "LIP.tar.gz"
    data_root = tmp_path / "data"
    result = runner.invoke(
        app, ["fetch", "--dataset", "lip", "--from", str(missing), "--data-root", str(data_root), "--no-progress"]
    )
    assert_one_line_error(result, contains=(str(missing),))
    assert not (data_root / "LIP").exists()
    assert leftovers(data_root) == [] and leftovers(tmp_path / "home") == []


def test_fetch_unknown_dataset():
    line = assert_one_line_error(runner.invoke(app, ["fetch", "--dataset", "lipp"]), exit_code=2)
    assert "lipp" in line


def test_fetch_weights_only_and_data_only(tmp_path):
    result = runner.invoke(app, ["fetch", LIP_MODEL, "--weights-only", "--data-only"])
    assert_one_line_error(result, exit_code=2, contains=("--weights-only", "--data-only"))
    assert files_under(tmp_path / "home") == []


def test_fetch_nothing_named():
    assert_one_line_error(runner.invoke(app, ["fetch"]), exit_code=2, contains=("--dataset",))


# ---------------------------------------------------------------------------------------------
# Flags the CLI does not have


@pytest.mark.parametrize(
    "command,option",
    [
        (["eval", LIP_MODEL, "--gpus", "2"], "--gpus"),
        (["list", "--format", "yaml"], "--format"),
        (["data", "check", "lip", "--sample", "-1"], "--sample"),
        (["eval", LIP_MODEL, "--max-batch", "0"], "--max-batch"),
    ],
    ids=["unknown-flag", "bad-choice", "negative-sample", "zero-batch"],
)
def test_bad_flags_are_usage_errors(command, option):
    assert_usage_error(runner.invoke(app, command), option)


def test_ctrl_c_outside_a_run_exits_130_with_one_line(monkeypatch):
    import repro.manifest

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(repro.manifest, "load_manifest", interrupted)  # imported inside the command
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "Aborted" not in result.output and "Traceback" not in result.output
