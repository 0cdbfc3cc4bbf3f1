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

    import repro.manifest

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/x.part")

    monkeypatch.setattr(repro.manifest, "load_manifest", full_disk)  # the command imports it when it runs
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: No space left on device: /cache/x.part"


# --- output a person can read (issue 10 section 3) ----------------------------------------------

LONG_URL_MODEL = "memorynetv2_upernet_resnest101os8_cocostuff10k"


def _terminal_list(width: int, **filters) -> str:
    import io

    from rich.console import Console

    from repro.cli.zoo import print_list, select_entries
    from repro.manifest import load_manifest

    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    entries = select_entries(load_manifest().entries, filters.get("dataset"), None, None)
    print_list(console, entries)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_list_on_a_terminal_fits_without_cutting_or_wrapping(width):
    from repro.manifest import load_manifest

    text = _terminal_list(width)
    lines = [line.rstrip() for line in text.splitlines()]
    assert "…" not in text  # nothing cut
    assert all(len(line) <= width for line in lines)
    rows = [line for line in lines if line.lstrip().startswith(("mcibi_", "memorynetv2_"))]
    entries = load_manifest().entries
    assert len(rows) == len(entries)  # one line per model: no row wraps
    for entry, row in zip(entries, rows):
        assert row.split()[0] == entry.id
        for value in entry.documented.values():
            assert ("blank" if value is None else f"{value:.2f}") in row


def test_list_drops_low_priority_columns_when_narrow():
    header = lambda text: next(line for line in text.splitlines() if line.lstrip().startswith("id "))  # noqa: E731
    narrow, wide = header(_terminal_list(80)).split(), header(_terminal_list(160)).split()
    assert narrow[0] == "id" and narrow[-3:] == ["single", "flip", "ms+flip"]
    assert set(narrow) < set(wide) and {"method", "segmentor", "backbone", "dataset"} <= set(wide)


def test_list_in_a_pipe_is_a_plain_aligned_table():
    result = runner.invoke(app, ["list", "--dataset", "lip"])  # CliRunner's stdout is not a terminal
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "12 models"
    assert lines[1].split() == ["id", "method", "segmentor", "backbone", "dataset", "single", "flip", "ms+flip"]
    assert not any(ch in result.output for ch in "│┃━─…")
    row = next(line for line in lines if line.startswith("mcibi_deeplabv3_r50_lip "))
    assert row.split()[-3:] == ["53.73", "54.08", "—"]
    assert len({len(line) for line in lines[1:] if line.split()[-1] != "—"}) <= 2  # aligned columns


def test_list_tsv():
    result = runner.invoke(app, ["list", "--format", "tsv", "--dataset", "LIP", "--method", "mcibi"])
    assert result.exit_code == 0
    header, *rows = result.output.strip().split("\n")
    assert header.split("\t") == ["id", "method", "segmentor", "backbone", "dataset", "single", "flip", "ms+flip"]
    assert rows[0].split("\t") == ["mcibi_deeplabv3_r50_lip", "mcibi", "DeepLabV3", "R-50-D8", "lip/val", "53.73", "54.08", ""]
    assert len(rows) == 4


@pytest.mark.parametrize("option, value, hint", [
    ("--dataset", "ade2k", "ade20k"),
    ("--method", "mcbi", "mcibi"),
    ("--backbone", "swinn", "swin"),
])
def test_list_unknown_filter_is_an_error_with_suggestions(option, value, hint):
    result = runner.invoke(app, ["list", option, value])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0]


def test_dataset_names_are_case_insensitive():
    ids = lambda args: [r["id"] for r in json.loads(runner.invoke(app, args).output)]  # noqa: E731
    assert ids(["list", "--format", "json", "--dataset", "ADE20k"]) == ids(["list", "--format", "json", "--dataset", "ade20k"])
    result = runner.invoke(app, ["data", "check", "ADE20k", "--root", "/nonexistent/ade"])
    assert result.exit_code == 1 and "does not exist" in result.output  # the name was accepted; the folder is missing
    assert runner.invoke(app, ["data", "check", "ADE2k"]).exit_code == 2


@pytest.mark.parametrize("columns", ["80", "200"])
def test_info_prints_urls_whole(columns):
    from repro.manifest import load_manifest

    entry = load_manifest().get(LONG_URL_MODEL)
    result = CliRunner(env={"COLUMNS": columns}).invoke(app, ["info", LONG_URL_MODEL])
    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.splitlines()]
    for url in [*entry.weights, *entry.config, *entry.log]:
        assert url in lines  # whole, on a line of its own
    assert "None" not in result.output and "…" not in result.output
    assert "MemoryNetV2 / MCIBI++ (TPAMI 2022)" in result.output and entry.document not in result.output


def test_info_json():
    result = runner.invoke(app, ["info", "mcibi_deeplabv3_r50_ade20k", "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["id"] == "mcibi_deeplabv3_r50_ade20k" and data["document_title"] == "MCIBI (ICCV 2021)"
    keys = list(data)
    assert keys[keys.index("document") + 1] == "document_title"  # read beside the document's file name
    assert data["weights"][0].startswith("https://") and "protocols" in data and data["sha256"] is None


def test_document_title_is_on_every_entry():
    from repro.manifest import load_manifest

    titles = {e.document_title for e in load_manifest().entries}
    assert titles == {"MCIBI (ICCV 2021)", "MemoryNetV2 / MCIBI++ (TPAMI 2022)"}
