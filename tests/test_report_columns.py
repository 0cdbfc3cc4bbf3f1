"""repro.report after issue 16/18: whole numbers in JSON/CSV, the current file of a row with several
result files, columns declared once, the HTML row-link hook, files under 700 lines."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from test_report import MANIFEST, make_result, scenario_results

import repro
from repro.report import table as report
from repro.report import render as report_render
from repro.manifest import load_manifest
from repro.results.files import write_result


def test_json_and_csv_write_image_counts_as_integers():
    table = report.build_report(load_manifest(MANIFEST), scenario_results())
    records = json.loads(report_render.render_json(table))
    counts = [r["num_images"] for r in records if r["num_images"] is not None]
    assert counts and all(isinstance(n, int) for n in counts)
    assert any(r["limit"] == 10 for r in records)
    text = report_render.render_csv(table)
    assert ",2000,2000," in text and "2000.0" not in text and "10.0" not in text
    assert pd.read_csv(io.StringIO(text))["num_images"].dropna().tolist()[0] == 2000


def test_a_row_with_several_files_names_its_current_one(tmp_path):
    later = datetime(2025, 1, 1, tzinfo=timezone.utc)
    full = write_result(make_result("mcibi_r50_ade", "single", 44.49), tmp_path)
    smoke = write_result(make_result("mcibi_r50_ade", "single", 30.0, status="partial", partial_reason="limit",
                                     limit=5, num_images=5, finished=later), tmp_path)
    table = report.build_report(load_manifest(MANIFEST), tmp_path)
    row = table.row("mcibi_r50_ade", "single")
    assert (row["status"], row["measured_rounded"]) == ("reproduced", 44.49)  # the newer smoke run does not win
    assert row["result_file"] == str(full) and row["other_files"] == smoke.name
    assert f"current file {full.name} (also: {smoke.name})" in row["note"]
    assert f"current file {full.name}" in report_render.render_markdown(table)


def test_a_display_column_is_one_line(monkeypatch):
    table = report.build_report(load_manifest(MANIFEST), scenario_results())
    columns = [*report.DISPLAY_COLUMNS, report.Column("num_images", "Images", "right", numeric=False)]
    monkeypatch.setattr(report_render, "DISPLAY_COLUMNS", columns)
    monkeypatch.setattr(report_render, "_MD_ALIGN", [report_render._MD_ALIGNS[c.align] for c in columns])
    text = report_render.render_markdown(table)
    assert "| Notes | Images |" in text and "| :- | -: |" in text
    assert "| 2000 |" in text


def test_render_html_links_rows_through_the_hook():
    table = report.build_report(load_manifest(MANIFEST), scenario_results())
    page = report_render.render_html(table, row_link=lambda row: f"explain/{row['model_id']}__{row['protocol']}.html"
                              if isinstance(row["result_status"], str) else None)
    assert '<td><a href="explain/mcibi_r50_ade__single.html">mcibi_r50_ade</a></td>' in page
    assert "<td>v2_upernet_lip</td>" in page  # its flip row has no result: no link
    assert "<a " not in report_render.render_html(table)


def test_every_module_stays_under_700_lines():
    package = Path(repro.__file__).parent
    for path in package.rglob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 700, path
