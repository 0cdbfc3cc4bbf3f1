"""`repro eval` end to end: subset refusal, results folder and paths, phases, plan, SIGTERM + resume.

A real bundled architecture (deterministic fill) on a synthetic LIP split, with a manifest reduced
to that row and its protocol shrunk to 32x24 to keep CPU time low.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from synthetic_data import make_lip
from typer.testing import CliRunner

from repro.cli import app
from repro.manifest import DEFAULT_PATH

runner = CliRunner()
MODEL = "memorynetv2_ppm_resnet50os8_lip"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(environment, data root, checkpoint) shared by the tests of this module."""
    from repro.models import build_segmentor, fill_model

    base = tmp_path_factory.mktemp("evaltruth")
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = next(e for e in raw["models"] if e["id"] == MODEL)
    entry["protocols"]["single"]["resize"] = {"output_size": [32, 24], "keep_ratio": False}
    raw["models"] = [entry]
    (base / "zoo.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    make_lip(base / "data" / "LIP", n_val=12)
    checkpoint = base / "filled.pth"
    with torch.random.fork_rng():
        torch.save({"model": fill_model(build_segmentor(MODEL)).state_dict()}, checkpoint)
    env = {"REPRO_MANIFEST": str(base / "zoo.yaml"), "REPRO_HOME": str(base / "home")}
    return env, base / "data", checkpoint


def _args(data: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["eval", MODEL, "--checkpoint", str(checkpoint), "--data-root", str(data), "--device", "cpu",
            "--workers", "0", *extra]


def test_subset_is_refused_then_partial_with_allow_subset(setup, tmp_path, monkeypatch):
    env, data, checkpoint = setup
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "res"))
    refused = runner.invoke(app, _args(data, checkpoint))
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: lip has 12 of the official 10000 images: pass --allow-subset to evaluate it anyway "
        "(partial, never compared)"
    ]
    plan = runner.invoke(app, _args(data, checkpoint, "--dry-run"))
    assert plan.exit_code == 0 and "12 images (a subset of the official 10000)" in plan.stdout

    result = runner.invoke(app, _args(data, checkpoint, "--allow-subset"))
    assert result.exit_code == 0, result.output
    path = (tmp_path / "res" / f"{MODEL}__single__subset.json").resolve()  # default folder: $REPRO_RESULTS
    assert f"  wrote {path}" in result.stderr.splitlines()
    written = json.loads(path.read_text())
    assert written["status"] == "partial" and written["partial_reason"] == "subset"
    assert written["num_images_official"] == 10000 and written["flops_per_image"] > 0
    assert re.search(rf"\[1/1\] {MODEL} single: building model [0-9.]+ s, loading checkpoint [0-9.]+ s; "
                     "evaluating\n", result.stderr)
    assert "(partial: 12 of the official 10000 images, not compared)" in result.stderr

    from repro.manifest import load_manifest
    from repro.report.table import build_report

    table = build_report(load_manifest(), tmp_path / "res")
    row = table.row(MODEL, "single")
    assert row["status"] == "partial" and row["delta"] is None  # never compared


def test_a_long_cpu_run_prints_the_plan_and_says_it_is_slow(setup, tmp_path, monkeypatch):
    env, data, checkpoint = setup
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("repro.planning.plan.CPU_GFLOPS_PER_THREAD", 1e-4)  # makes the estimate hours long
    result = runner.invoke(app, _args(data, checkpoint, "--allow-subset", "--limit", "1", "--results", str(tmp_path)))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("plan: 1 run on cpu")
    assert re.search(r"note: evaluating on the CPU is slow: ~[0-9.]+ [hd] for 1 run \(estimate; about ", result.stderr)


def _wait_for_progress(state_file: Path, process: subprocess.Popen, timeout: float = 120) -> int:
    """Images counted in the saved state once it shows the run started (done >= 1)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists():
            try:
                done = int(torch.load(state_file, weights_only=True)["done"])
            except Exception:  # caught mid-rename: read again
                done = 0
            if done >= 1:
                return done
        time.sleep(0.05)
    raise AssertionError(f"no progress saved (exit code {process.poll()})")


@pytest.mark.slow
def test_sigterm_saves_progress_and_the_same_command_resumes(setup, tmp_path):
    env, data, checkpoint = setup
    env = {**os.environ, **env, "REPRO_RESULTS": str(tmp_path / "res")}
    command = [sys.executable, "-m", "repro", *_args(data, checkpoint, "--allow-subset", "--save-every", "1")]
    state_file = tmp_path / "res" / ".progress" / f"{MODEL}__single__subset.pt"

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = _wait_for_progress(state_file, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    saved = int(torch.load(state_file, weights_only=True)["done"])
    assert seen <= saved < 12
    assert f"interrupted after {saved} of 12 images; progress saved, run the same command to resume" in err

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming after {saved} of 12 images" in again.stderr
    resumed = json.loads((tmp_path / "res" / f"{MODEL}__single__subset.json").read_text())

    once = subprocess.run([*command, "--results", str(tmp_path / "once")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert once.returncode == 0, once.stderr
    one_shot = json.loads((tmp_path / "once" / f"{MODEL}__single__subset.json").read_text())
    assert resumed["num_images"] == one_shot["num_images"] == 12  # every image counted once
    for key in ("miou", "aacc", "macc", "per_class_iou"):
        assert resumed[key] == one_shot[key]
    assert not state_file.exists()


def test_sigterm_while_planning_exits_143_without_a_traceback(setup, tmp_path, monkeypatch):
    """SIGTERM outside a run (here: while the plan looks at the files) ends the command quietly."""
    env, data, checkpoint = setup
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr("repro.planning.plan.build_plan", terminated)
    result = runner.invoke(app, _args(data, checkpoint, "--allow-subset", "--results", str(tmp_path)))
    assert result.exit_code == 143, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not Terminated's traceback
    assert not list(tmp_path.glob(f"{MODEL}__single*.json"))


def test_the_plan_keeps_only_a_result_of_the_same_evaluation(setup, tmp_path, monkeypatch):
    """A --limit smoke result does not make the full run look done (the engine redoes it)."""
    env, data, checkpoint = setup
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = ["--allow-subset", "--results", str(tmp_path)]
    smoke = runner.invoke(app, _args(data, checkpoint, *out, "--limit", "1"))
    assert smoke.exit_code == 0, smoke.output
    kept = runner.invoke(app, _args(data, checkpoint, *out, "--limit", "1", "--dry-run"))
    assert "result on disk (kept unless --force)" in kept.stdout
    full = runner.invoke(app, _args(data, checkpoint, *out, "--dry-run"))
    assert full.exit_code == 0, full.output
    assert "result on disk" not in full.stdout and "ready" in full.stdout
    runner.invoke(app, _args(data, checkpoint, *out))
    again = runner.invoke(app, _args(data, checkpoint, *out, "--dry-run"))
    assert "result on disk (kept unless --force)" in again.stdout  # the same subset folder: kept
