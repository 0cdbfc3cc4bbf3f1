"""`repro eval --launcher local|slurm`: job sizing, what is (re)submitted, a real local job, sbatch script."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from synthetic_data import make_lip
from test_cli_eval import MODEL, small_setup  # noqa: F401 - fixture
from typer.testing import CliRunner

from repro.planning import launch
from repro.cli import app
from repro.cli.eval import PlannedRun
from repro.manifest import load_manifest

runner = CliRunner()


def _eval_args(setup: dict) -> list[str]:
    return ["eval", MODEL, "--protocol", "single", "--checkpoint", str(setup["checkpoint"]), "--data-root",
            str(setup["data"]), "--limit", "2", "--device", "cpu", "--workers", "0", "--results", str(setup["out"])]


# ---------------------------------------------------------------------------------------------
# Sizing from the cost estimate


def test_jobs_are_sized_from_the_estimate():
    manifest = load_manifest()
    entry = next(e for e in manifest.entries if {"single", "ms+flip"} <= set(e.protocols) and e.dataset == "ade20k")
    single = launch.estimate_gpu_seconds(entry.id, "single")
    msflip = launch.estimate_gpu_seconds(entry.id, "ms+flip")
    assert 0 < single < msflip  # six scales with flip cost more than one pass
    assert launch.estimate_gpu_seconds(entry.id, "single", limit=10) < single

    one = launch.plan_job(entry.id, "ms+flip", launch.LaunchOptions(launcher="slurm", max_gpus=1))
    many = launch.plan_job(entry.id, "ms+flip", launch.LaunchOptions(launcher="slurm", max_gpus=64))
    assert one.gpus == 1 and 1 <= many.gpus <= 64
    assert many.gpus == min(64, max(1, math.ceil(msflip / launch.TARGET_JOB_SECONDS)))
    assert many.minutes <= one.minutes and one.minutes >= msflip / 60
    fixed = launch.plan_job(entry.id, "ms+flip", launch.LaunchOptions(launcher="slurm", time_min=33))
    assert fixed.minutes == 33


def test_cost_model_can_be_swapped(monkeypatch):
    monkeypatch.setattr(launch, "COST_MODEL", lambda model_id, protocol, limit, row: 10 * 3600.0)
    plan = launch.plan_job(MODEL, "single", launch.LaunchOptions(launcher="slurm", max_gpus=8))
    assert plan.gpus == 5 and plan.gpu_seconds == 36000.0


def test_executor_parameters():
    plan = launch.JobPlan(MODEL, "single", 100.0, 2, 45)
    options = launch.LaunchOptions(launcher="slurm", partition="gpu", account="lab", extra={"qos": "high"})
    params = launch.executor_parameters(plan, options)
    assert params["timeout_min"] == 45 and params["gpus_per_node"] == 2 and params["tasks_per_node"] == 2
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    assert params["slurm_additional_parameters"] == {"qos": "high"}
    local = launch.executor_parameters(plan, launch.LaunchOptions(launcher="local"))
    assert not any(key.startswith("slurm_") for key in local)
    assert launch.parse_slurm_opts(["qos=high", "--mail-type=END"]) == {"qos": "high", "mail_type": "END"}


@pytest.mark.parametrize("args, message", [
    (["--slurm-partition", "gpu"], "--slurm-partition needs --launcher slurm"),
    (["--launcher", "local", "--slurm-account", "lab"], "--slurm-account applies to --launcher slurm only"),
    (["--slurm-account", "lab", "--slurm-time-min", "5"], "--slurm-account, --slurm-time-min need --launcher slurm"),
    (["--launcher", "slurm", "--slurm-opt", "qos"], "key=value"),
    (["--wait-jobs"], "--wait-jobs needs --launcher slurm"),
    (["--launcher", "local", "--wait-jobs"], "--wait-jobs applies to --launcher slurm only (the local launcher always waits)"),
])
def test_bad_launcher_options_are_one_line(small_setup, args, message):
    result = runner.invoke(app, _eval_args(small_setup) + args)
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("error:") and message in result.output
    assert "Traceback" not in result.output and not small_setup["out"].exists()


# ---------------------------------------------------------------------------------------------
# A real job through submitit's LocalExecutor


@pytest.mark.slow  # ~35 s: a job process imports torch and builds a ResNet-50
def test_local_launcher_runs_the_job_and_resubmits_only_unfinished(small_setup, tmp_path):
    from repro.engine import EngineOptions, evaluate

    result = runner.invoke(app, _eval_args(small_setup) + ["--launcher", "local"])
    assert result.exit_code == 0, result.output
    assert "submitted" in result.output and "partial, mIoU" in result.output
    files = sorted(small_setup["out"].glob(f"{MODEL}__single*.json"))  # a partial run: its own file name
    assert [f.name for f in files] == [f"{MODEL}__single__subset-limit2.json"]
    written = json.loads(files[0].read_text())
    assert written["status"] == "partial" and written["num_images"] == 2
    here = evaluate(MODEL, "single", EngineOptions(checkpoint=small_setup["checkpoint"], data_root=small_setup["data"],
                                                   device="cpu", limit=2, workers=0, results=tmp_path / "here"))
    assert written["miou"] == here.miou  # the job computed what an in-process run computes
    assert json.loads((small_setup["out"] / ".submitit" / launch.LAUNCH_RECORD).read_text())[f"{MODEL}__single"]

    again = runner.invoke(app, _eval_args(small_setup) + ["--launcher", "local"])
    assert again.exit_code == 0 and "1 of 1 runs already have a result" in again.output
    assert "nothing to submit" in again.output and "submitted" not in again.output.replace("nothing to submit", "")


def test_pending_runs(small_setup, tmp_path):
    from repro.engine import EngineOptions, evaluate

    out = tmp_path / "results"
    evaluate(MODEL, "single", EngineOptions(checkpoint=small_setup["checkpoint"], data_root=small_setup["data"],
                                            device="cpu", limit=1, workers=0, results=out))
    runs = [PlannedRun(MODEL, "single")]
    same = EngineOptions(results=out, limit=1, precision="fp32", resume=True, data_root=small_setup["data"])
    assert launch.pending(runs, same) == []
    assert launch.pending(runs, replace(same, force=True)) == runs  # --force
    assert launch.pending(runs, replace(same, resume=False)) == []  # --no-resume: saved progress only
    assert launch.pending(runs, replace(same, limit=2)) == runs  # another evaluation
    assert launch.pending(runs, replace(same, precision="bf16")) == runs
    assert launch.pending(runs, replace(same, results=tmp_path / "empty")) == runs
    make_lip(tmp_path / "other" / "LIP", n_val=3)
    assert launch.pending(runs, replace(same, data_root=tmp_path / "other")) == runs  # another dataset folder
    assert launch.pending(runs, replace(same, checkpoint=small_setup["checkpoint"])) == []
    assert launch.pending(runs, replace(same, checkpoint=tmp_path / "other.pth")) == runs
    small_setup["checkpoint"].touch()  # replaced after the result was written
    os.utime(small_setup["checkpoint"], (2e9, 2e9))
    assert launch.pending(runs, same) == runs


# ---------------------------------------------------------------------------------------------
# SLURM: the sbatch script submitit writes, with stand-in sbatch/srun on PATH


def _fake_slurm(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, body in {"sbatch": 'echo "Submitted batch job 4242"', "srun": "exit 0",
                       "sacct": "exit 0", "scancel": "exit 0"}.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_launcher_writes_the_sized_sbatch_script(small_setup, tmp_path, monkeypatch):
    _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    args = _eval_args(small_setup) + ["--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-account", "lab",
                                      "--slurm-time-min", "30", "--slurm-opt", "qos=high"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "submitted 4242" in result.output and "1 job submitted" in result.output
    scripts = list((small_setup["out"] / ".submitit").rglob("*_submission.sh"))
    assert len(scripts) == 1
    script = scripts[0].read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=30", "#SBATCH --qos=high",
                 "#SBATCH --gpus-per-node=1", f"#SBATCH --job-name=repro-{MODEL}-single"):
        assert line in script, line


def test_a_rejected_sbatch_is_one_error_line(small_setup, tmp_path, monkeypatch):
    _fake_slurm(tmp_path / "bin")
    (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\n"
                                             "exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = runner.invoke(app, _eval_args(small_setup) + ["--launcher", "slurm", "--slurm-partition", "nope"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    assert result.output.strip().splitlines()[-1].startswith("error: ")
    assert "invalid partition specified" in result.output


def test_a_subset_result_is_judged_as_the_plan_judges_it(small_setup, tmp_path):
    """A result of a folder smaller than the official split (--allow-subset) is finished while the
    folder holds the same images (as in the plan: the launcher counts the folder too), and
    resubmitted once the folder has grown."""
    from repro.engine import EngineOptions, evaluate
    from repro.planning.plan import build_plan, detect_device

    out = tmp_path / "results"
    result = evaluate(MODEL, "single", EngineOptions(checkpoint=small_setup["checkpoint"], data_root=small_setup["data"],
                                                     device="cpu", workers=0, results=out, allow_subset=True))
    assert result.partial_reason == "subset"
    runs = [PlannedRun(MODEL, "single")]
    options = EngineOptions(results=out, precision="fp32", resume=True, allow_subset=True,
                            checkpoint=small_setup["checkpoint"], data_root=small_setup["data"])
    plan = build_plan(load_manifest(), runs, [], "single", detect_device("cpu"), options)
    assert plan.rows[0].result_on_disk
    assert launch.pending(runs, options) == []
    make_lip(small_setup["data"] / "LIP", n_val=4)  # the folder grew: the result is of another folder
    assert launch.pending(runs, options) == runs
