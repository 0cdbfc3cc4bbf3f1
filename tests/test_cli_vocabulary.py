"""One vocabulary across commands: --format values, "segmentor" vs "head", ids in any case,
plain output without trailing spaces in a pipe."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from repro.cli import app

runner = CliRunner(env={"COLUMNS": "80"})
MODEL = "mcibi_deeplabv3_r50_lip"


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("command", [["list"], ["info", MODEL], ["status"], ["data", "list"],
                                     ["eval", MODEL, "--dry-run"]])
def test_every_data_printing_command_takes_table_and_json(command, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path))
    table = invoke(*command, "--format", "table")
    assert table.exit_code == 0, table.output
    as_json = invoke(*command, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    json.loads(as_json.stdout)


def test_report_takes_table_for_its_markdown(tmp_path):
    table = invoke("report", "--results", str(tmp_path), "--format", "table")
    md = invoke("report", "--results", str(tmp_path), "--format", "md")  # the old name still works
    assert table.exit_code == md.exit_code == 0
    assert (table.stdout, table.stderr) == (md.stdout, md.stderr)


def test_old_info_format_name_still_works():
    assert invoke("info", MODEL, "--format", "text").stdout == invoke("info", MODEL).stdout


def test_eval_format_json_without_dry_run_is_a_usage_error():
    result = invoke("eval", MODEL, "--format", "json")
    assert result.exit_code == 2 and "--dry-run" in result.stderr


def test_eval_dry_run_json_lists_the_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path))
    plan = json.loads(invoke("eval", MODEL, "--dry-run", "--format", "json").stdout)
    assert [(r["model_id"], r["protocol"]) for r in plan["runs"]] == [(MODEL, "single"), (MODEL, "flip")]
    assert all(r["ready"] is False and "checkpoint" in r["missing"] for r in plan["runs"])
    assert plan["fetch_command"] == f"repro fetch {MODEL}"


def test_segmentor_and_head_mean_the_same_in_list_and_info():
    listed = next(r for r in json.loads(invoke("list", "--format", "json").stdout) if r["id"] == MODEL)
    info = json.loads(invoke("info", MODEL, "--format", "json").stdout)
    assert (listed["segmentor"], listed["head"]) == (info["segmentor"], info["head"]) == ("DeepLabV3", "aspp")
    lines = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["list", "--dataset", "lip"]).stdout.splitlines()  # every column
    header, row = lines[1].split(), next(line for line in lines if line.startswith(MODEL + " ")).split()
    assert "head" not in header and row[header.index("segmentor")] == "DeepLabV3"


@pytest.mark.parametrize("name", [MODEL.upper(), "Mcibi_DeepLabV3_R50_LIP", f" {MODEL} "])
def test_model_ids_in_any_case(name):
    result = invoke("info", name, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == MODEL


def test_an_unknown_id_in_capitals_gets_suggestions():
    result = invoke("info", "MCIBI_DEEPLABV3_R50_LIPP")
    assert result.exit_code == 2
    assert f"did you mean {MODEL}" in result.stderr


@pytest.mark.parametrize("model", [MODEL, "memorynetv2_upernet_resnet101os8_lip"])  # the second has long notes
def test_info_in_a_pipe_has_no_trailing_spaces(model):
    lines = invoke("info", model).stdout.splitlines()
    assert any(line.strip().startswith("segmentor") for line in lines)
    assert any(line.startswith("note: ") for line in lines) or model == MODEL
    assert [line for line in lines if line != line.rstrip()] == []


def test_selftest_json_is_its_report_on_stdout_and_the_lines_on_stderr(monkeypatch):
    import repro.selftest as selftest

    def fake_run(device, quick, say, results=None):
        say("  MCIBI R-50 DeepLabV3  ok")
        check = selftest.Check("architecture", "MCIBI R-50 DeepLabV3", "cfg", {"cpu-fixture": 1e-6}, 1e-4, True)
        return selftest.SelftestReport("cpu", {"torch": "2.x"}, quick, [], [check], seconds=1.0)

    monkeypatch.setattr(selftest, "run_selftest", fake_run)
    result = invoke("selftest", "--quick", "--no-record", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["checks"][0]["name"] == "MCIBI R-50 DeepLabV3"
    assert "MCIBI R-50 DeepLabV3  ok" in result.stderr and "selftest passed" in result.stderr
