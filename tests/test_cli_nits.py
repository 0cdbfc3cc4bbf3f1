"""Small things a new user meets first (issue 18 #19): a bad choice is one line with a suggestion,
a failed eval leaves no empty results folder behind."""

from __future__ import annotations

import pytest
from fetch_support import fitting_checkpoint_bytes
from typer.testing import CliRunner

import synthetic_data as sd
from repro.cli import app

runner = CliRunner(env={"COLUMNS": "80"})
R50, R101 = "mcibi_deeplabv3_r50_lip", "mcibi_deeplabv3_r101_lip"


@pytest.mark.parametrize("args, option, hint", [
    (["eval", R50, "--protocol", "msflip"], "--protocol", "did you mean ms+flip?"),
    (["list", "--format", "tab"], "--format", "did you mean table?"),
    (["data", "check", "lip", "--bogus"], "--bogus", "repro data check --help"),
    (["--bogus"], "--bogus", "repro --help"),
])
def test_a_usage_error_is_one_line(args, option, hint):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and option in line and hint in line
    assert "Value error" not in line and "╭" not in result.stderr


def test_repro_alone_still_prints_the_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 2 and "Usage: repro" in result.output and "error:" not in result.output


@pytest.fixture
def lip(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    return sd.make_lip(tmp_path / "LIP", n_val=1)


def eval_into(out, checkpoint, lip):
    return runner.invoke(app, ["eval", R50, "--protocol", "single", "--checkpoint", str(checkpoint), "--device", "cpu",
                               "--dataset-root", f"lip={lip}", "--allow-subset", "--results", str(out)])


def test_a_checkpoint_refused_by_the_plan_creates_no_results_folder(tmp_path, lip):
    text = tmp_path / "text.pth"
    text.write_text("<html>rate limited</html>\n")
    result = eval_into(tmp_path / "new_results", text, lip)
    assert result.exit_code == 1 and "is not a PyTorch checkpoint" in result.stderr
    assert not (tmp_path / "new_results").exists()


def test_a_run_failing_at_once_leaves_no_results_folder(tmp_path, lip):
    other = tmp_path / "r101.pth"  # a readable checkpoint of another model: refused when loaded
    other.write_bytes(fitting_checkpoint_bytes(R101))
    result = eval_into(tmp_path / "new_results", other, lip)
    assert result.exit_code == 1 and "does not fit model" in result.stderr
    assert not (tmp_path / "new_results").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert eval_into(existing, other, lip).exit_code == 1
    assert existing.is_dir()  # a folder the user had is never removed


def test_a_bad_checkpoint_is_named_even_when_the_dataset_is_missing_too(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))  # no LIP: `repro fetch` would bring that
    missing = tmp_path / "nope.pth"
    result = runner.invoke(app, ["eval", R50, "--checkpoint", str(missing)])  # two protocols, both blocked
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: checkpoint {missing} does not exist"
