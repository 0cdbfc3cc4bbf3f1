"""repro.results: file names per conditions, the one freshness rule, archiving; repro.engine.lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.results.files import (
    EvalResult, archive_result, evidence_path, load_results, partial_tag, result_filename, write_result,
)
from repro.results.freshness import RunConditions, conditions_of, same_evaluation
from repro.engine.lock import lock_paths, run_lock

SHA = "a" * 64
SETTINGS = {"mode": "whole", "scales": [1.0], "flip": False}


def make_result(**overrides) -> EvalResult:
    fields = dict(
        model_id="m", protocol="single", settings=dict(SETTINGS), dataset="lip", split="val", data_root="/d/LIP",
        status="complete", miou=40.0, num_images=10, num_images_total=10, device="cpu",
        torch_version="2.13.0", repro_version="0.1.0", started=datetime(2024, 5, 1, tzinfo=timezone.utc),
        finished=datetime(2024, 5, 1, 1, tzinfo=timezone.utc), seconds=1.0, images_per_second=1.0,
        checkpoint="/ckpt/m.pth", checkpoint_sha256=SHA,
    )
    fields.update(overrides)
    return EvalResult(**fields)


# ---------------------------------------------------------------------------------- file names


def test_result_filename_keeps_the_old_name_for_a_complete_default_fp32_result():
    assert result_filename("m", "flip") == "m__flip.json"
    assert result_filename("m", "flip", "upstream-head", "upstream-head") == "m__flip.json"
    assert result_filename("m", "flip", "training-era", "upstream-head") == "m__flip__training-era.json"


def test_result_filename_gives_precision_and_partial_runs_their_own_file():
    assert result_filename("m", "flip", precision="bf16") == "m__flip__bf16.json"
    assert result_filename("m", "flip", partial="limit50") == "m__flip__limit50.json"
    assert (result_filename("m", "flip", "training-era", "upstream-head", "tf32", "subset")
            == "m__flip__training-era__tf32__subset.json")


def test_partial_tag():
    assert partial_tag(None, False) is None
    assert partial_tag(50, False, 10000) == "limit50"
    assert partial_tag(50, False, 3) is None  # a limit above the folder's images covers it all
    assert partial_tag(None, True) == "subset"
    assert partial_tag(2, True, 3) == "subset-limit2"


def test_write_result_puts_a_limit_run_beside_the_complete_one(tmp_path):
    full = write_result(make_result(), tmp_path)
    smoke = write_result(make_result(status="partial", partial_reason="limit", limit=1, num_images=1), tmp_path)
    assert full.name == "m__single.json" and smoke.name == "m__single__limit1.json"
    assert sorted(r.num_images for r in load_results(tmp_path)) == [1, 10]


def test_old_result_files_still_load_and_new_fields_are_optional(tmp_path):
    data = json.loads(make_result().model_dump_json())
    for name in ("evidence", "evidence_sha256", "dataset_fingerprint", "predictions_dir"):
        data.pop(name)
    (tmp_path / "m__single.json").write_text(json.dumps(data))
    (result,) = load_results(tmp_path)
    assert result.evidence is None and result.precision == "fp32"
    assert make_result(precision="tf32-all").precision == "tf32-all"


# ---------------------------------------------------------------------------------- freshness


def test_same_evaluation_of_its_own_conditions_is_true_at_both_levels(tmp_path):
    result = make_result(checkpoint=None)
    assert same_evaluation(result, conditions_of(result), exact=True) == (True, [])
    assert same_evaluation(result, conditions_of(result), exact=False) == (True, [])


@pytest.mark.parametrize("change, words", [
    ({"settings": {**SETTINGS, "flip": True}}, "protocol settings differ (flip)"),
    ({"variant": "training-era"}, "upstream-head forward, not training-era"),
    ({"precision": "bf16"}, "precision fp32, not bf16"),
    ({"limit": 5}, "--limit none, not 5"),
    ({"folder_images": 12}, "10 images in the folder then, 12 now"),
    ({"data_root": "/elsewhere"}, "data folder /d/LIP, not /elsewhere"),
    ({"checkpoint_sha256": "b" * 64}, "checkpoint sha256 aaaaaaaaaaaa…, not bbbbbbbbbbbb…"),
])
def test_same_evaluation_names_what_differs(change, words):
    result = make_result(checkpoint=None)
    conditions = RunConditions(**{**conditions_of(result).__dict__, **change})
    same, differences = same_evaluation(result, conditions, exact=True)
    assert not same and differences == [words]


def test_a_limit_covering_the_whole_folder_is_the_same_evaluation():
    result = make_result(checkpoint=None, limit=None)
    conditions = RunConditions(**{**conditions_of(result).__dict__, "limit": 50})  # 10 images: all of them
    assert same_evaluation(result, conditions, exact=True)[0]


def test_unknown_conditions_are_not_compared():
    result = make_result(checkpoint=None)
    conditions = RunConditions("m", "single", dict(SETTINGS), "upstream-head")  # no data, no checkpoint
    assert same_evaluation(result, conditions, exact=False) == (True, [])


def test_cheap_level_compares_the_checkpoint_path_and_its_age_without_hashing(tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"weights")
    old = datetime(2024, 5, 1, 1, tzinfo=timezone.utc).timestamp()
    os.utime(ckpt, (old - 60, old - 60))
    result = make_result(checkpoint=str(ckpt), checkpoint_sha256="whatever")
    here = RunConditions("m", "single", dict(SETTINGS), "upstream-head", checkpoint=str(ckpt))
    assert same_evaluation(result, here, exact=False) == (True, [])
    other = RunConditions("m", "single", dict(SETTINGS), "upstream-head", checkpoint=str(tmp_path / "x.pth"))
    assert same_evaluation(result, other, exact=False)[1] == [f"checkpoint {ckpt}, not {tmp_path / 'x.pth'}"]
    os.utime(ckpt, (old + 60, old + 60))  # replaced after the result was made
    assert "changed after the result was made" in same_evaluation(result, here, exact=False)[1][0]
    # exact: the digest decides, whatever the file's age
    assert same_evaluation(result, RunConditions(**{**here.__dict__, "checkpoint_sha256": "whatever"}),
                           exact=True) == (True, [])
    assert not same_evaluation(result, here, exact=True)[0]  # digest unknown to the conditions


def test_a_server_result_without_its_submission_is_not_finished(tmp_path):
    zipped = tmp_path / "c.zip"
    result = make_result(checkpoint=None, status="server", miou=None, submission=str(zipped))
    assert "is missing" in same_evaluation(result, conditions_of(result), exact=True)[1][0]
    zipped.write_bytes(b"zip")
    assert same_evaluation(result, conditions_of(result), exact=True)[0]


# ---------------------------------------------------------------------------------- archive


def test_archive_result_renames_the_result_and_its_evidence_and_deletes_nothing(tmp_path):
    path = write_result(make_result(), tmp_path)
    evidence_path(path).write_bytes(b"npz")
    kept = archive_result(path)
    assert not path.exists() and kept.parent == tmp_path and kept.name.startswith("m__single.json.replaced-")
    assert json.loads(kept.read_text())["miou"] == 40.0
    sidecars = list(tmp_path.glob("m__single.evidence.npz.replaced-*"))
    assert len(sidecars) == 1 and sidecars[0].read_bytes() == b"npz"
    assert load_results(tmp_path) == []  # an archived file no longer counts as a result


# ---------------------------------------------------------------------------------- the lock


HOLDER = textwrap.dedent("""
    import sys, time
    from repro.engine.lock import run_lock
    with run_lock(sys.argv[1], "m__single"):
        print("held", flush=True)
        sys.stdin.readline()
""")


def _hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    proc = _hold(tmp_path)
    try:
        with pytest.raises(ReproError) as err, run_lock(tmp_path, "m__single"):
            pass
        assert err.value.exit_code == 1
        assert f"m__single is being evaluated by pid {proc.pid} on {socket.gethostname()} since " in str(err.value)
        assert str(err.value).endswith("; wait with --wait-lock")
        with run_lock(tmp_path, "m__other"):  # another result is not blocked
            pass
    finally:
        proc.communicate("\n")
    with run_lock(tmp_path, "m__single"):  # free again once the holder ended
        pass


def test_wait_blocks_until_the_holder_ends(tmp_path):
    proc = _hold(tmp_path)
    notes: list[str] = []

    def release_on_note(message: str) -> None:
        notes.append(message)
        proc.stdin.write("\n")  # the holder ends only once we wait: the wait must outlast it
        proc.stdin.flush()

    with run_lock(tmp_path, "m__single", wait=True, note=release_on_note) as record:
        assert json.loads(record.read_text())["pid"] == os.getpid()
    proc.wait()
    assert len(notes) == 1 and f"pid {proc.pid}" in notes[0] and "waiting" in notes[0]


def test_a_stale_lock_of_a_dead_pid_is_taken_over_with_a_note(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    _, record = lock_paths(tmp_path, "m__single")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "2026-01-01T00:00:00"}))
    notes: list[str] = []
    with run_lock(tmp_path, "m__single", note=notes.append):
        assert json.loads(record.read_text())["pid"] == os.getpid()
    assert notes == [f"note: took over the stale lock of m__single (pid {pid} on {socket.gethostname()} "
                     f"since 2026-01-01T00:00:00, dead)"]
    assert not record.exists()  # removed when the run ends
