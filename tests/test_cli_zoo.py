"""`repro list`, `repro info`, `--version`, `--help` through Typer's test runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from repro import __version__
from repro.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def test_list_table_shows_every_model():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "54 models" in result.output
    assert "mcibi_deeplabv3_r50_ade20k" in result.output and "45.95" in result.output


def test_list_json_and_filters():
    result = runner.invoke(app, ["list", "--format", "json", "--dataset", "lip", "--method", "mcibi"])
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [
        "mcibi_deeplabv3_r50_lip", "mcibi_deeplabv3_r101_lip", "mcibi_deeplabv3_s101_lip", "mcibi_deeplabv3_hrnetv2w48_lip",
    ]
    assert rows[0]["documented"] == {"single": 53.73, "flip": 54.08}
    swin = json.loads(runner.invoke(app, ["list", "--format", "json", "--backbone", "swin"]).output)
    assert len(swin) == 5 and all(r["backbone"] == "Swin-Large" for r in swin)
    mcibipp = json.loads(runner.invoke(app, ["list", "--format", "json", "--method", "mcibi++"]).output)
    assert len(mcibipp) == 36


def test_info_shows_protocols():
    result = runner.invoke(app, ["info", "mcibiplusplus_aspp_hrnetv2w48_lip"])
    assert result.exit_code == 0
    out = result.output
    assert "memorynetv2_aspp_hrnetv2w48_lip" in out
    assert "15<->14" in out and "slide" in out and "[473, 473] / [315, 315]" in out
    assert "0.75, 1, 1.25" in out


def test_unknown_id_exit_code_and_suggestion():
    result = runner.invoke(app, ["info", "mcibi_deeplabv3_r50_ade"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model id")
    assert "mcibi_deeplabv3_r50_ade20k" in lines[0]
    assert "Traceback" not in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"repro {__version__}"


@pytest.mark.parametrize("command", [[], ["list"], ["info"]])
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_os_errors_become_one_line(monkeypatch):
    import errno

    import repro.cli.zoo as zoo

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/x.part")

    monkeypatch.setattr(zoo, "load_manifest", full_disk)
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: No space left on device: /cache/x.part"
