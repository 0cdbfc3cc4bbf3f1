"""`repro fetch ID --from FILE` names what a file is before any digest question: readable, class
count, the model's strict keys (on a meta-device model); folders and missing paths get their own
line; a dataset accepted with --allow-subset is called a subset, never complete."""

from __future__ import annotations

import pytest
from fetch_support import fetch_env, fitting_checkpoint_bytes  # noqa: F401 - fixture
from typer.testing import CliRunner

import synthetic_data as sd
from repro.cli import app
from repro.fetch import checkpoint_path, read_lock_file

R50, R101 = "mcibi_deeplabv3_r50_lip", "mcibi_deeplabv3_r101_lip"  # both LIP: 20 classes
runner = CliRunner()


def fetch(*args, progress: bool = False):
    result = runner.invoke(app, ["fetch", *map(str, args), *([] if progress else ["--no-progress"])])
    assert "Traceback" not in result.output
    return result


def one_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    good = folder / "r50.pth"
    good.write_bytes(fitting_checkpoint_bytes(R50))
    other = folder / "r50_retrained.pth"
    other.write_bytes(fitting_checkpoint_bytes(R50, value=1.0))
    r101 = folder / "r101.pth"
    r101.write_bytes(fitting_checkpoint_bytes(R101))
    truncated = folder / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:20_000])
    return {"good": good, "other": other, "r101": r101, "truncated": truncated}


def test_another_models_checkpoint_of_the_same_class_count_is_refused(fetch_env, files):
    line = one_error(fetch(R50, "--from", files["r101"]))
    assert f"{files['r101']} was not imported as the checkpoint of {R50}" in line
    assert "do not fit" in line and "ResNet-101" in line
    assert checkpoint_path(R50) is None and not read_lock_file()
    assert not (fetch_env / "cache" / "checkpoints" / R50).exists()


def test_with_a_checkpoint_cached_the_content_is_checked_before_the_digest(fetch_env, files):
    assert fetch(R50, "--from", files["good"]).exit_code == 0
    recorded = read_lock_file()[R50]["sha256"]
    truncated = one_error(fetch(R50, "--from", files["truncated"]))
    assert "not a readable checkpoint" in truncated and "sha256" not in truncated
    wrong = one_error(fetch(R50, "--from", files["r101"]))
    assert "do not fit" in wrong and "sha256" not in wrong
    other = one_error(fetch(R50, "--from", files["other"]))  # a valid R-50 file of other content
    assert "fits the model" in other and f"when {files['good']} was imported" in other and "--force" in other
    assert "first download" not in other
    assert read_lock_file()[R50]["sha256"] == recorded  # the accepted file stays
    assert fetch(R50, "--from", files["other"], "--force").exit_code == 0


def test_torch_messages_are_cut_between_words():
    from repro.errors import first_sentence as clip

    text = ("Weights only load failed because the file holds something odd " * 5).strip()
    cut = clip(text, limit=100)
    assert len(cut) <= 102 and cut.endswith(" …")
    assert text.startswith(cut.removesuffix(" …")) and text[len(cut) - 2] == " "  # the next char starts a word
    assert clip("Short. Second sentence") == "Short"
    from repro.models.checkpoint import _first_line  # the load errors use the same cut

    assert _first_line(RuntimeError(text + "\nmore")) == clip(text)


def test_a_folder_given_as_checkpoint_says_what_to_do(fetch_env, files):
    line = one_error(fetch(R50, "--from", files["good"].parent))
    assert "is a folder" in line and f"--dataset NAME --from {files['good'].parent}" in line
    assert "no such file" not in line


def test_a_missing_from_path_is_named_even_with_the_dataset_registered(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine", n_val=2)
    assert fetch("--dataset", "lip", "--from", mine, "--allow-subset").exit_code == 0
    missing = tmp_path / "nonexistent"
    for extra in ([], ["--allow-subset"]):
        line = one_error(fetch("--dataset", "lip", "--from", missing, *extra))
        assert line == f"error: --from {missing}: no such file or folder"


def test_a_subset_is_called_a_subset_and_data_check_remembers_it(fetch_env, tmp_path):
    mine = sd.make_lip(tmp_path / "mine", n_val=2)
    registered = fetch("--dataset", "lip", "--from", mine, "--allow-subset", progress=True)
    assert registered.exit_code == 0
    assert "accepted as a subset: 2 of 10000 images" in registered.stderr and "complete" not in registered.stderr
    found = fetch("--dataset", "lip", "--allow-subset", progress=True)
    assert "accepted as a subset: 2 of 10000 images" in found.stderr and "complete" not in found.stderr
    check = runner.invoke(app, ["data", "check", "lip"])
    assert check.exit_code == 1
    assert "accepted as a subset (2 of 10000 images) by `repro fetch --allow-subset`" in check.stderr
    assert "repro data check lip --allow-subset" in check.stderr


def test_a_quick_import_prints_no_progress_lines_in_a_pipe(fetch_env, files):
    result = fetch(R50, "--from", files["good"], progress=True)  # CliRunner's stderr is a pipe
    assert result.exit_code == 0
    assert [line.split(" ")[1] for line in result.stderr.splitlines()] == ["imported"]


def test_a_lasting_transfer_prints_lines_at_growing_intervals(monkeypatch, capsys):
    import repro.fetch.progress as progress

    clock = iter(range(0, 10_000, 5))  # each reading 5 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    view = progress.LineProgress()
    view.start("big.pth", 1000 * 100, 0, verb="importing")
    for _ in range(100):
        view.advance(1000)
    view.finish()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("  big.pth: 6% ")  # the first after 30 s (a 5 s import: none)
    assert len(lines) <= 18 and lines[-1].startswith("  big.pth: done")  # 500 s: about one per 30 s
    assert not any("importing" in line for line in lines)
