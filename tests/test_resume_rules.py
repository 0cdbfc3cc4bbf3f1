"""The resume rules one by one (tests/test_fault_injection.py draws them at random): an interrupted
run resumes only into sinks that take back their whole saved part, an image is in every sink or in
none, a result and its sidecar are published in step, a full disk or a read-only folder is one line
and the same command resumes, a damaged progress file is ignored with one line, out-of-step
sidecars are named and never compared, a stale lock is taken over, and a kept result names the
options it was not computed with."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from synthetic_data import make_lip
from test_evaluate import CountingDataset, lip_job, options
from typer.testing import CliRunner

import repro.engine.run as run_module
import repro.results.files as files_module
from repro.cli import app
from repro.datasets import open_dataset
from repro.engine import Ranks, progress_path, run_job
from repro.engine.lock import lock_paths, run_lock
from repro.engine.progress import State
from repro.errors import ReproError
from repro.results.evidence import load as load_evidence
from repro.results.files import evidence_path, read_result

N = 3
STEM = "tiny_lip__ms+flip"


@pytest.fixture
def lip(tmp_path) -> Path:
    return make_lip(tmp_path / "LIP", n_val=N)


def _counting(lip: Path, crash_at: int | None = None) -> CountingDataset:
    return CountingDataset(open_dataset("lip", lip, "val"), crash_at=crash_at)


def _interrupt_after(count: int):
    """A progress callback that sends SIGINT once `count` images are counted (as Ctrl-C would)."""
    def tell(done, total):
        if done == count:
            os.kill(os.getpid(), signal.SIGINT)
    return tell


def _uninterrupted(lip: Path, tmp_path: Path, **kw):
    out = tmp_path / "uninterrupted"
    kw = {k: (out / v.name if k == "save_predictions" and v is not None else v) for k, v in kw.items()}
    return run_job(lip_job(lip), options(out, **kw)), out


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_the_issue_scenario_ctrl_c_then_save_predictions_gives_the_uninterrupted_run(lip, tmp_path):
    """Issue 23: Ctrl-C after the first image, then the same run with --save-predictions added.
    The old engine resumed the metric, failed on the predictions and went on with the restored
    counts: 4 evidence rows for 3 images and a wrong mIoU marked complete."""
    with pytest.raises(KeyboardInterrupt):
        run_job(lip_job(lip), options(tmp_path), progress=_interrupt_after(1))
    notes, data = [], _counting(lip)
    job = lip_job(lip, data)
    result = run_job(job, options(tmp_path, save_predictions=tmp_path / "preds"), log=notes.append)
    reference, out = _uninterrupted(lip, tmp_path, save_predictions=tmp_path / "preds")
    assert any("--save-predictions was not part of the interrupted run" in n and "starting over" in n for n in notes)
    assert data.reads == [0, 1, 2]  # from fresh sinks: every image counted once
    assert (result.status, result.miou, result.evidence_sha256) == ("complete", reference.miou,
                                                                    reference.evidence_sha256)
    assert len(load_evidence(evidence_path(tmp_path / "results" / f"{STEM}.json")).image_ids) == N
    assert _pngs(tmp_path / "preds") == _pngs(out / "preds") and len(_pngs(tmp_path / "preds")) == N


def test_dropping_save_predictions_still_resumes(lip, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_job(lip_job(lip), options(tmp_path, save_predictions=tmp_path / "preds"), progress=_interrupt_after(1))
    notes, data = [], _counting(lip)
    result = run_job(lip_job(lip, data), options(tmp_path), log=notes.append)
    assert data.reads == [1, 2] and any("resuming after 1 of 3" in n for n in notes)
    assert result.miou == _uninterrupted(lip, tmp_path)[0].miou and result.predictions_dir is None


def test_a_sink_failing_mid_image_leaves_the_image_in_no_sink(lip, tmp_path, monkeypatch):
    import repro.engine.predictions as predictions

    real, calls = predictions._write_png, []

    def full_disk(path, array):
        calls.append(path)
        if len(calls) == 2:  # the second image's PNG: the metric has counted it by then (sink order)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, array)

    monkeypatch.setattr(predictions, "_write_png", full_disk)
    with pytest.raises(ReproError) as err:
        run_job(lip_job(lip), options(tmp_path, save_predictions=tmp_path / "preds"))
    line = str(err.value)
    assert "No space left on device" in line and "run the same command to resume" in line and "\n" not in line
    state = torch.load(progress_path(tmp_path / "results", STEM, Ranks()), weights_only=True)
    assert state["done"] == 1 and len(state["sinks"]["metric"]["state"]["ids"]) == 1
    monkeypatch.setattr(predictions, "_write_png", real)
    data = _counting(lip)
    result = run_job(lip_job(lip, data), options(tmp_path, save_predictions=tmp_path / "preds"))
    assert data.reads == [1, 2]
    reference = _uninterrupted(lip, tmp_path, save_predictions=tmp_path / "preds")[0]
    assert (result.miou, result.evidence_sha256) == (reference.miou, reference.evidence_sha256)


def test_a_forced_replacement_keeps_its_own_sidecar_and_archives_the_old_pair(lip, tmp_path):
    first = run_job(lip_job(lip, sha="a" * 64), options(tmp_path))
    second = run_job(lip_job(lip, sha="b" * 64), options(tmp_path, force=True))
    path = tmp_path / "results" / f"{STEM}.json"
    assert read_result(path).checkpoint_sha256 == "b" * 64
    load_evidence(evidence_path(path), second.evidence_sha256)  # its own sidecar, with its digest
    archived = sorted(p.name.split(".replaced-")[0] for p in (tmp_path / "results").glob("*.replaced-*"))
    assert archived == [f"{STEM}.evidence.npz", f"{STEM}.json"]
    old = next((tmp_path / "results").glob(f"{STEM}.evidence.npz.replaced-*"))
    load_evidence(old, first.evidence_sha256)


def test_a_full_disk_at_a_progress_save_keeps_the_saved_state_and_the_run_resumes(lip, tmp_path, monkeypatch):
    real, saves = State.save, []

    def save(self, path):
        saves.append(self.done)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, path)

    monkeypatch.setattr(State, "save", save)
    with pytest.raises(ReproError) as err:
        run_job(lip_job(lip), options(tmp_path))
    assert "cannot save the progress" in str(err.value) and "(1 image) is intact" in str(err.value)
    assert torch.load(progress_path(tmp_path / "results", STEM, Ranks()), weights_only=True)["done"] == 1
    monkeypatch.setattr(State, "save", real)
    data = _counting(lip)
    result = run_job(lip_job(lip, data), options(tmp_path))
    assert data.reads == [1, 2] and result.miou == _uninterrupted(lip, tmp_path)[0].miou


def test_a_full_disk_at_the_result_write_leaves_no_half_and_the_rerun_writes_it(lip, tmp_path, monkeypatch):
    real = files_module.write_beside

    def full_at_the_result(path, data, *args):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, *args)

    monkeypatch.setattr(files_module, "write_beside", full_at_the_result)
    with pytest.raises(ReproError) as err:
        run_job(lip_job(lip), options(tmp_path))
    assert "cannot write the result" in str(err.value) and "every image is counted" in str(err.value)
    folder = tmp_path / "results"
    assert not list(folder.glob("*.json")) and not list(folder.glob("*.npz")) and not list(folder.glob(".*tmp"))
    monkeypatch.setattr(files_module, "write_beside", real)
    notes, data = [], _counting(lip)
    result = run_job(lip_job(lip, data), options(tmp_path), log=notes.append)
    assert data.reads == [] and any("all images were already counted" in n for n in notes)
    assert result.evidence_sha256 == _uninterrupted(lip, tmp_path)[0].evidence_sha256


def test_a_read_only_results_folder_is_one_line_before_any_image(lip, tmp_path, monkeypatch):
    def read_only(path, data, *args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(run_module, "write_beside", read_only)
    data = _counting(lip)
    with pytest.raises(ReproError, match=r"^cannot write to the results folder .*: Read-only file system; "
                                         r"choose another with --results$"):
        run_job(lip_job(lip, data), options(tmp_path))
    assert data.reads == []


def _write_state(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path) if not isinstance(payload, bytes) else path.write_bytes(payload)


@pytest.mark.parametrize("damage, words", [
    ("garbage", "it is unreadable"),
    ("older version", "saved by another repro version (state format 2, not 3)"),
    ("another row", "made under other conditions (the model"),
])
def test_a_damaged_or_foreign_progress_file_is_ignored_with_one_line(lip, tmp_path, damage, words):
    state_file = progress_path(tmp_path / "results", STEM, Ranks())
    with pytest.raises(KeyboardInterrupt):
        run_job(lip_job(lip), options(tmp_path), progress=_interrupt_after(2))
    saved = torch.load(state_file, weights_only=True)
    if damage == "garbage":
        _write_state(state_file, b"\x00not a torch file")
    elif damage == "older version":
        _write_state(state_file, {**saved, "version": 2})
    else:
        conditions = {**saved["conditions"], "model_id": "another_row"}
        _write_state(state_file, {**saved, "conditions": conditions})
    notes, data = [], _counting(lip)
    result = run_job(lip_job(lip, data), options(tmp_path), log=notes.append)
    assert data.reads == [0, 1, 2] and result.num_images == N
    assert [n for n in notes if words in n and n.endswith("starting over")], notes


def test_out_of_step_sidecars_are_named_and_never_compared(lip, tmp_path, monkeypatch):
    """A result whose sidecar is another's (status --verify, report) or gone, and a sidecar
    without its result: named, and the result not used."""
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    other = run_job(lip_job(lip, sha="b" * 64), options(tmp_path / "other", limit=1))
    run_job(lip_job(lip, sha="a" * 64), options(tmp_path, limit=2))
    folder = tmp_path / "results"
    result_file = folder / f"{STEM}__limit2.json"
    swapped = evidence_path(result_file)
    swapped.write_bytes(evidence_path(tmp_path / "other" / "results" / f"{STEM}__limit1.json").read_bytes())
    assert other.evidence_sha256 != read_result(result_file).evidence_sha256
    found, notes = files_module.read_results_tolerant(folder, verify_evidence=True)
    assert found == [] and "not the one it was written with" in notes[0]
    found, notes = files_module.read_results_tolerant(folder)  # without hashing: present is enough
    assert [path for path, _ in found] == [result_file]
    report = CliRunner().invoke(app, ["report", "--results", str(folder), "--format", "csv"])
    assert report.exit_code == 0 and "not used: its evidence sidecar" in report.stderr, report.output
    status = CliRunner().invoke(app, ["status", "--verify", "--results", str(folder)])
    assert "not used: its evidence sidecar" in " ".join(status.output.split()), status.output
    result_file.unlink()
    found, notes = files_module.read_results_tolerant(folder)
    assert found == [] and notes == [f"{swapped}: an evidence sidecar without its result (a write was "
                                     "interrupted); the next run of that row replaces it"]


def test_a_kept_result_names_the_options_it_was_not_computed_with(lip, tmp_path):
    """Issue 25 point 4: a rerun with other engine options over a finished result says what was
    not applied and how to apply it."""
    run_job(lip_job(lip), options(tmp_path))
    notes = []
    run_job(lip_job(lip), options(tmp_path, max_batch=1, resize_on_cpu=True, save_predictions=tmp_path / "p"),
            log=notes.append)
    assert notes == [f"tiny_lip [ms+flip]: kept: {tmp_path / 'results' / STEM}.json; not applied: "
                     f"--save-predictions {tmp_path / 'p'}, --max-batch 1, --cpu-resize (--force redoes the run "
                     "with them, or give another --results)"]
    assert not (tmp_path / "p").exists()


def test_a_kept_results_damaged_predictions_are_made_again(lip, tmp_path):
    run_job(lip_job(lip), options(tmp_path, save_predictions=tmp_path / "p"))
    next((tmp_path / "p").glob("*.png")).unlink()
    notes, data = [], _counting(lip)
    run_job(lip_job(lip, data), options(tmp_path, save_predictions=tmp_path / "p"), log=notes.append)
    assert data.reads == [0, 1, 2] and len(_pngs(tmp_path / "p")) == N
    assert any("saved predictions of the finished result are out of step (1 PNG" in n for n in notes)


HOLDER = textwrap.dedent("""
    import sys
    from repro.engine.lock import run_lock
    with run_lock(sys.argv[1], "m__single"):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_after_kill_9_of_the_holder_the_next_run_proceeds(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    notes = []
    with run_lock(tmp_path, "m__single", note=notes.append):
        pass
    assert len(notes) == 1 and f"took over the stale lock of m__single (pid {holder.pid}" in notes[0]
    assert notes[0].endswith(", dead)")
    assert not lock_paths(tmp_path, "m__single")[1].exists()


RACER = textwrap.dedent("""
    import sys, time
    from repro.engine.lock import run_lock
    from repro.errors import ReproError
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # both start at the same moment
    try:
        with run_lock(sys.argv[1], "m__single"):
            print("computed", flush=True)
            time.sleep(2)
    except ReproError as err:
        print(f"refused: {err}", flush=True)
""")


def test_two_runs_started_together_one_computes_the_other_names_the_holder(tmp_path):
    import time

    start = str(time.time() + 1.5)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), start], stdout=subprocess.PIPE,
                               text=True) for _ in range(2)]
    said = {racer.pid: racer.communicate(timeout=60)[0].strip() for racer in racers}
    winner = [pid for pid, line in said.items() if line == "computed"]
    refused = [line for line in said.values() if line.startswith("refused: ")]
    assert len(winner) == 1 and len(refused) == 1, said
    assert refused[0].startswith(f"refused: m__single is being evaluated by pid {winner[0]} on ")
