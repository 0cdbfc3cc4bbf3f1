"""Output that fits: 80 columns (or $COLUMNS) in a pipe, plain text without boxes, nothing that
matters cut. CliRunner's stdout is a pipe."""

from __future__ import annotations

import pytest
import synthetic_data as sd
from typer.testing import CliRunner

from repro.cli import app

BOX = "│┃━─┏┡╭╰═"


def run(args: list[str], columns: str | None):
    env = {"COLUMNS": columns} if columns else {}
    result = CliRunner(env=env).invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not any(ch in result.stdout for ch in BOX)
    return result.stdout


@pytest.fixture(autouse=True)
def no_columns(monkeypatch, tmp_path):
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe without $COLUMNS: 80
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("columns", [None, "80"])
def test_list_fits_80_columns_in_a_pipe(columns):
    from repro.manifest import load_manifest

    lines = run(["list"], columns).splitlines()
    assert max(map(len, lines)) <= 80
    header = lines[1].split()
    assert header[0] == "id" and header[-3:] == ["single", "flip", "ms+flip"]
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == [e.id for e in load_manifest().entries]  # one line each, ids whole


def test_list_shows_every_column_where_the_pipe_is_wide():
    header = run(["list"], "200").splitlines()[1].split()
    assert header == ["id", "method", "segmentor", "backbone", "dataset", "single", "flip", "ms+flip"]


@pytest.mark.parametrize("columns", [None, "80"])
def test_status_wraps_its_legend_to_the_width(columns):
    lines = run(["status"], columns).splitlines()
    prose = [line for line in lines if "/" not in line]  # dataset folders and paths stay whole
    assert max(map(len, prose)) <= 80
    last_blank = max(i for i, line in enumerate(lines) if line == "")
    legend = " ".join(lines[last_blank + 1:])  # the closing legend, wrapped over several lines
    assert len(lines) - last_blank > 2
    assert legend.startswith("cached: the file has the size") and legend.endswith("—: not run.")


def test_data_check_is_plain_text_in_a_pipe(tmp_path):
    root = sd.make_lip(tmp_path / "LIP", n_val=3)
    lines = run(["data", "check", "lip", "--root", str(root), "--allow-subset"], "80").splitlines()
    assert lines[0] == f"LIP at {root}"
    assert lines[1].split() == ["split", "images", "official", "labels", "read", "classes", "seen", "ignored", "px",
                                "status"]
    assert lines[2].split()[:3] == ["val", "3", "10000"] and lines[2].split()[-1] == "partial"
    assert all(line == line.rstrip() for line in lines)
