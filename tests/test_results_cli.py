"""Issue 18 #1 #2 #7 #8 #10 through `repro eval` / `repro status`: nothing measured is lost, one
run per result at a time, "kept" reruns, one name for the results folder, one redo flag."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from test_cli_eval import MODEL, small_setup  # noqa: F401 - fixture
from typer.testing import CliRunner

from repro.cli import app
from repro.datasets import DATASETS

runner = CliRunner()


def _eval(setup: dict, *extra: str, checkpoint=None) -> list[str]:
    return ["eval", MODEL, "--protocol", "single", "--checkpoint", str(checkpoint or setup["checkpoint"]),
            "--data-root", str(setup["data"]), "--device", "cpu", "--workers", "0", *extra]


@pytest.fixture
def whole(small_setup, monkeypatch):  # noqa: F811 - pytest fixture
    """The 3-image LIP folder is the whole split: its runs are complete."""
    monkeypatch.setitem(DATASETS["lip"].splits, "val", 3)
    return small_setup


def _other_checkpoint(setup: dict):
    """Another checkpoint of the same network (other weights, other sha256)."""
    state = torch.load(setup["checkpoint"], weights_only=True)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    path = setup["checkpoint"].with_name("other.pth")
    torch.save(state, path)
    return path


def test_a_run_never_replaces_a_result_of_other_conditions(whole):
    results = whole["out"]
    full = results / f"{MODEL}__single.json"
    first = runner.invoke(app, _eval(whole, "--results", str(results)))
    assert first.exit_code == 0, first.output
    assert json.loads(full.read_text())["num_images"] == 3

    smoke = runner.invoke(app, _eval(whole, "--results", str(results), "--limit", "1"))  # the README's smoke line
    assert smoke.exit_code == 0, smoke.output
    assert json.loads(full.read_text())["num_images"] == 3  # untouched
    assert json.loads((results / f"{MODEL}__single__limit1.json").read_text())["num_images"] == 1

    other = _other_checkpoint(whole)
    refused = runner.invoke(app, _eval(whole, "--results", str(results), checkpoint=other))
    assert refused.exit_code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {full} holds a complete result of other conditions (checkpoint ")
    assert line.endswith("--force replaces it (the old file is kept, renamed)")
    old = full.read_text()

    forced = runner.invoke(app, _eval(whole, "--results", str(results), "--force", checkpoint=other))
    assert forced.exit_code == 0, forced.output
    (archived,) = results.glob(f"{MODEL}__single.json.replaced-*")
    assert archived.read_text() == old  # the replaced result is kept, renamed
    assert json.loads(full.read_text())["checkpoint"] == str(other)

    status = runner.invoke(app, ["status", "--results", str(results), "--format", "json", MODEL])
    assert status.exit_code == 0, status.output
    (single,) = json.loads(status.stdout)["models"][0]["protocols"]
    assert single["result_file"] == str(full)  # the complete result is the current one
    assert single["other_files"] == [str(results / f"{MODEL}__single__limit1.json")]


def test_a_rerun_whose_saved_predictions_are_out_of_step_is_evaluated_again(whole):
    """The command keeps a finished run only as the engine would: with a PNG of its predictions
    folder gone, the same command evaluates again and the folder is whole once more."""
    results, predictions = whole["out"], whole["out"].parent / "preds"
    first = runner.invoke(app, _eval(whole, "--results", str(results), "--save-predictions", str(predictions)))
    assert first.exit_code == 0, first.output
    pngs = sorted(predictions.rglob("*.png"))
    assert len(pngs) == 3
    pngs[1].unlink()
    again = runner.invoke(app, _eval(whole, "--results", str(results), "--save-predictions", str(predictions)))
    assert again.exit_code == 0, again.output
    assert "out of step (1 PNG missing, overwritten or left over); evaluating again" in again.stderr
    assert "kept:" not in again.stderr and sorted(predictions.rglob("*.png")) == pngs


def test_a_run_the_engine_keeps_is_said_once(whole, monkeypatch):
    """A finished run the command did not keep itself (another process finished it meanwhile,
    say) is kept by the engine: one "kept" line, the engine's, with its reason."""
    import repro.cli.eval as cli_eval

    results = whole["out"]
    assert runner.invoke(app, _eval(whole, "--results", str(results))).exit_code == 0
    monkeypatch.setattr(cli_eval, "_kept_runs", lambda *args: {})
    again = runner.invoke(app, _eval(whole, "--results", str(results)))
    assert again.exit_code == 0, again.output
    kept = [line for line in again.stderr.splitlines() if "kept:" in line]
    assert kept == [f"{MODEL} [single]: kept: {(results / f'{MODEL}__single.json').resolve()} (use --force to redo)"]


def test_a_rerun_is_kept_and_no_resume_does_not_redo_it_but_force_does(whole):
    results = whole["out"]
    assert runner.invoke(app, _eval(whole, "--results", str(results))).exit_code == 0
    path = (results / f"{MODEL}__single.json").resolve()
    for extra in ((), ("--no-resume",)):
        again = runner.invoke(app, _eval(whole, "--results", str(results), *extra))
        assert again.exit_code == 0, again.output
        assert again.stderr.splitlines() == [f"kept: {path} (use --force to redo)"] and again.stdout == ""
    plan = runner.invoke(app, _eval(whole, "--results", str(results), "--dry-run"))
    assert "result on disk (kept unless --force)" in plan.stdout
    redo = runner.invoke(app, _eval(whole, "--results", str(results), "--force"))
    assert redo.exit_code == 0, redo.output
    assert f"  wrote {path}" in redo.stderr.splitlines()
    assert len(list(results.glob(f"{MODEL}__single.json.replaced-*"))) == 1


def test_results_is_the_folder_option_and_output_its_hidden_old_name(small_setup, tmp_path):  # noqa: F811
    new = runner.invoke(app, _eval(small_setup, "--limit", "1", "--results", str(tmp_path / "a")))
    assert new.exit_code == 0, new.output
    assert list((tmp_path / "a").glob(f"{MODEL}__single*.json"))
    old = runner.invoke(app, _eval(small_setup, "--limit", "1", "--output", str(tmp_path / "b")))
    assert old.exit_code == 0, old.output
    assert list((tmp_path / "b").glob(f"{MODEL}__single*.json"))
    shown = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert "--results" in shown.stdout and "--output" not in shown.stdout


HOLDER = textwrap.dedent("""
    import sys
    from repro.engine.lock import run_lock
    with run_lock(sys.argv[1], sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_a_second_run_of_the_same_result_is_refused_naming_the_holder(small_setup):  # noqa: F811
    results = small_setup["out"]
    stem = f"{MODEL}__single__subset-limit1"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(results), stem], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = runner.invoke(app, _eval(small_setup, "--limit", "1", "--results", str(results)))
        assert second.exit_code == 1
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {stem} is being evaluated by pid {holder.pid} on ")
        assert line.endswith("; wait with --wait-lock")
        assert not list(results.glob("*.json"))
    finally:
        holder.communicate("\n")
    third = runner.invoke(app, _eval(small_setup, "--limit", "1", "--results", str(results)))
    assert third.exit_code == 0, third.output


def test_eval_wait_waits_for_the_holder_of_the_lock(small_setup):  # noqa: F811
    results = small_setup["out"]
    stem = f"{MODEL}__single__subset-limit1"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(results), stem], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    waiting = subprocess.Popen([sys.executable, "-m", "repro", *_eval(small_setup, "--limit", "1", "--results",
                                str(results), "--wait")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in waiting.stderr:  # the run says whom it waits for, then waits
            if "waiting for it to finish" in line:
                assert f"is being evaluated by pid {holder.pid} on " in line
                break
        else:
            raise AssertionError(f"no waiting note (exit {waiting.wait()})")
        assert waiting.poll() is None  # still waiting while the lock is held
        holder.communicate("\n")
        rest, _ = waiting.communicate(timeout=300)
        assert waiting.returncode == 0
        assert list(results.glob(f"{stem}.json"))
    finally:
        if waiting.poll() is None:
            waiting.kill()
        if holder.poll() is None:
            holder.kill()
