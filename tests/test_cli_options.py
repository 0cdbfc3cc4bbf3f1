"""Options declared once and spelled the same in every command: --results, --protocol (old name
--tta), --precision typed once, the two waits, the cluster options checked once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from repro.cli import app
from repro.cli import eval as eval_cli
from repro.cli.options import DOCUMENTED, PROTOCOLS
from repro.engine.options import EngineOptions
from repro.errors import ReproError
from repro.manifest import PROTOCOL_NAMES
from repro.numerics import Precision

runner = CliRunner(env={"COLUMNS": "80"})
LIP = "mcibi_deeplabv3_r50_lip"  # single and flip
ADE = "mcibi_deeplabv3_r50_ade20k"  # single and ms+flip


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REPRO_RESULTS", raising=False)
    return tmp_path / "home"


def _plan(*args: str) -> dict:
    result = runner.invoke(app, ["eval", *args, "--dry-run", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_cli_names_the_manifest_s_protocols():
    assert PROTOCOLS == PROTOCOL_NAMES and DOCUMENTED not in PROTOCOLS


@pytest.mark.parametrize("name", ["--protocol", "--tta"])  # --tta: eval's old spelling, still accepted
def test_protocol_and_its_old_name_pick_the_same_runs(name):
    plan = _plan(LIP, name, "flip")
    assert plan["protocol"] == "flip" and [run["protocol"] for run in plan["runs"]] == ["flip"]


def test_protocol_defaults_to_every_documented_protocol():
    assert [run["protocol"] for run in _plan(ADE)["runs"]] == ["single", "ms+flip"]


@pytest.mark.parametrize("command", [["eval", LIP], ["explain", LIP], ["diff", LIP, LIP]])
def test_a_bad_protocol_is_the_same_usage_error_in_every_command(command):
    result = runner.invoke(app, [*command, "--tta", "msflip"])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--protocol': 'msflip' is not one of ")
    assert "did you mean ms+flip?" in line


def test_documented_is_eval_s_choice_only():
    result = runner.invoke(app, ["explain", LIP, "--protocol", DOCUMENTED])
    assert result.exit_code == 2 and "'single', 'flip', 'ms+flip'" in result.stderr


@pytest.mark.parametrize("name", ["--results", "--output"])  # --output: eval's old name of --results
def test_results_folder_is_resolved_once_to_an_absolute_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = _plan(LIP, "--protocol", "single", name, "relative/results")
    assert plan["runs"][0]["result_file"] == str(tmp_path / "relative" / "results" / f"{LIP}__single.json")


def test_engine_options_name_the_results_folder_in_one_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = EngineOptions(results="out")
    assert options.results_folder == tmp_path / "out" and options.results_folder.is_absolute()
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "env"))
    assert EngineOptions().results_folder == tmp_path / "env"  # looked up when used, not when made
    assert EngineOptions().absolute().results == str(tmp_path / "env")  # a job elsewhere gets it named


def test_status_prints_the_results_folder_absolute(tmp_path, monkeypatch):
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["status", LIP, "--results", "rel"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"results:     {tmp_path / 'rel'}"


def test_engine_options_check_themselves_once(tmp_path):
    options = EngineOptions(precision=" TF32 ")
    assert options.precision is Precision.TF32
    for bad, words in [({"precision": "fp8"}, "unknown precision 'fp8'"), ({"paint": True}, "--paint needs"),
                       ({"limit": 0}, "--limit must be a positive"), ({"save_every": 0}, "progress-save interval")]:
        with pytest.raises(ReproError, match=words) as caught:
            EngineOptions(**bad)
        assert caught.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# What reaches the engine and the launcher (the runs themselves are replaced by a recorder)


@pytest.fixture
def recorded(monkeypatch):
    calls = []
    monkeypatch.setattr(eval_cli, "_each_precision", lambda request, settings, precisions:
                        calls.append((request, settings, precisions)))
    return calls


def _eval(recorded, *args: str):
    result = runner.invoke(app, ["eval", LIP, *args])
    assert result.exit_code == 0, result.output
    (call,) = recorded
    return call


def test_precision_reaches_the_engine_typed(recorded):
    _, settings, precisions = _eval(recorded, "--precision", "bf16,FP32,bf16")
    assert precisions == [Precision.BF16, Precision.FP32] and all(type(p) is Precision for p in precisions)
    assert settings.precision is Precision.BF16


@pytest.mark.parametrize("args, lock, jobs", [
    ([], False, None),
    (["--wait-lock"], True, None),
    (["--wait"], True, None),  # the old flag: the lock here
    (["--launcher", "slurm"], False, False),
    (["--launcher", "slurm", "--wait-jobs"], False, True),
    (["--launcher", "slurm", "--wait"], True, True),  # the old flag: the lock and the jobs
    (["--launcher", "local"], False, True),  # the local launcher always waits for its jobs
])
def test_the_lock_wait_and_the_job_wait_are_separate_flags(recorded, args, lock, jobs):
    request, settings, _ = _eval(recorded, *args)
    assert settings.wait_lock is lock
    assert (request.launch.wait_jobs if request.launch is not None else None) is jobs


def test_cluster_options_are_checked_once_and_carried_parsed(recorded, monkeypatch):
    from repro.planning import launch

    parsed = []
    original = launch.parse_slurm_opts
    monkeypatch.setattr(launch, "parse_slurm_opts", lambda items: parsed.append(items) or original(items))
    request, _, _ = _eval(recorded, "--launcher", "slurm", "--slurm-opt", "qos=high", "--slurm-gpus", "2")
    assert parsed == [["qos=high"]]
    assert request.launch.extra == {"qos": "high"} and request.launch.max_gpus == 2


def test_the_results_option_is_declared_once():
    """Every command's --results comes from repro.cli.options (one help, one metavar)."""
    import repro.cli

    for path in Path(repro.cli.__file__).parent.glob("*.py"):
        if path.name != "options.py":
            text = path.read_text(encoding="utf-8")
            assert '"--results"' not in text and '"--tta"' not in text and '"--protocol"' not in text, path.name
