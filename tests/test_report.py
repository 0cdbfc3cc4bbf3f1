"""`repro.report` and `repro report`: documented vs measured tables, formats, plot, exit codes.

A small test manifest (tests/fixtures/report/manifest.yaml) and result files written here with
`write_result` cover every row status; the expected markdown was written by hand.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from repro.report import render as report_render
from repro.report import table as report
from repro.cli import app
from repro.errors import ReproError, UnknownModelError
from repro.manifest import load_manifest
from repro.results.files import EvalResult, write_result

FIXTURES = Path(__file__).parent / "fixtures" / "report"
MANIFEST = FIXTURES / "manifest.yaml"
SUBMISSION = "/tmp/submissions/mcibi_r50_city.zip"

runner = CliRunner(env={"COLUMNS": "200"})

ENV_CPU = dict(device="cpu", torch_version="2.13.0", cuda_version=None, repro_version="0.1.0", git_commit="abc1234")
ENV_GPU = dict(
    device="NVIDIA H100 80GB HBM3", torch_version="2.5.1", cuda_version="12.4", repro_version="0.1.0",
    git_commit="abc1234",
)
LIP_CLASSES = {"background": 86.5, "hat": 60.1, "hair": 70.0, "glove": None, "sunglasses": 30.2, "upperclothes": 60.1}


def make_result(model_id: str, protocol: str, miou: float | None, **overrides) -> EvalResult:
    fields = dict(
        model_id=model_id,
        protocol=protocol,
        settings={},
        dataset="ade20k",
        split="val",
        data_root="/data/ADE20k",
        status="complete",
        miou=miou,
        num_images=2000,
        num_images_total=2000,
        started=datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        finished=datetime(2024, 5, 1, 13, 0, tzinfo=timezone.utc),
        seconds=3600.0,
        images_per_second=0.55,
        **ENV_CPU,
    )
    fields.update(overrides)
    return EvalResult(**fields)


def scenario_results() -> list[EvalResult]:
    """One result per row status of the test manifest (see expected.md)."""
    return [
        # Δ = 44.49 - 44.39 = +0.10 exactly at the tolerance (in binary floats it is 0.1000000000000014).
        make_result("mcibi_r50_ade", "single", 44.49),
        # 45.8449 prints as 45.84: Δ = -0.11, just outside.
        make_result("mcibi_r50_ade", "ms+flip", 45.8449),
        make_result("mcibi_r101_ade", "single", 50.0, status="partial", num_images=10, limit=10),
        make_result("mcibi_r101_ade", "ms+flip", 47.3, precision="bf16", **ENV_GPU),
        make_result(
            "mcibi_r50_city", "ms+flip", None, status="server", dataset="cityscapes", split="test",
            submission=SUBMISSION, num_images=1525, num_images_total=1525,
        ),
        make_result("v2_fcn_lip", "single", 41.234, dataset="lip"),
        make_result("v2_upernet_lip", "single", 55.9012, miou_rounded=55.90, dataset="lip", per_class_iou=LIP_CLASSES),
        make_result("v2_upernet_lip", "ms+flip", 56.1, dataset="lip"),
        make_result("some_other_model", "single", 12.0),
    ]


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(MANIFEST)


@pytest.fixture
def results_dir(tmp_path):
    folder = tmp_path / "results"
    for result in scenario_results():
        write_result(result, folder)
    return folder


def invoke(*args: str):
    return runner.invoke(app, ["report", "--manifest", str(MANIFEST), *args])


# ------------------------------------------------------------------------------ the table


def test_markdown_matches_hand_written_table(manifest, results_dir):
    frame = report.build_report(manifest, results_dir)
    assert report_render.render_markdown(frame) == (FIXTURES / "expected.md").read_text(encoding="utf-8")


def test_rows_statuses_and_deltas(manifest):
    frame = report.build_report(manifest, scenario_results()).to_frame()
    assert list(frame.columns) == report.REPORT_COLUMNS
    got = {(r.model_id, r.protocol): (r.status, None if pd.isna(r.delta) else r.delta) for r in frame.itertuples()}
    assert got == {
        ("mcibi_r50_ade", "single"): ("reproduced", 0.10),
        ("mcibi_r50_ade", "ms+flip"): ("failed", -0.11),
        ("mcibi_r101_ade", "single"): ("partial", None),
        ("mcibi_r101_ade", "ms+flip"): ("non-comparable", None),
        ("mcibi_r50_city", "ms+flip"): ("server", None),
        ("v2_fcn_lip", "single"): ("blank-doc", None),
        ("v2_upernet_lip", "single"): ("reproduced", 0.03),
        ("v2_upernet_lip", "flip"): ("not-run", None),
        ("v2_upernet_lip", "ms+flip"): ("failed", -0.22),
    }
    # Document order, and the repeated "LIP" heading of two sections stays two groups.
    assert list(frame["model_id"].drop_duplicates()) == manifest.ids()
    assert frame.groupby("group")["table"].first().tolist() == ["ADE20k", "CityScapes", "LIP", "LIP"]
    assert frame.attrs["unmatched_results"] == ["some_other_model"]
    server = frame[frame["status"] == "server"].iloc[0]
    assert server["submission"] == SUBMISSION and SUBMISSION in server["note"]


def test_report_rows_and_its_pandas_frame_agree(manifest):
    """The report is plain rows (no pandas to print it); `to_frame()` gives the same table to pandas users."""
    built = report.build_report(manifest, scenario_results(), ids=["v2_upernet_lip"])
    frame = built.to_frame()
    assert list(frame.columns) == report.REPORT_COLUMNS and len(frame) == len(built) == 3
    for row, (_, series) in zip(built, frame.iterrows()):
        for column in report.REPORT_COLUMNS:
            value = series[column]
            assert (row[column] is None and pd.isna(value)) if row[column] is None else row[column] == value, column
    assert str(frame["delta"].dtype) == "float64" and str(frame["num_images"].dtype) == "Int64"
    assert frame.attrs["ids"] == built.ids == ["v2_upernet_lip"] and frame.attrs["tolerance"] == built.tolerance
    assert built.row("v2_upernet_lip", "flip")["status"] == "not-run"
    with pytest.raises(KeyError):
        built.row("v2_upernet_lip", "slide")


@pytest.mark.parametrize(
    ("measured", "recorded_rounded", "tolerance", "expected"),
    [
        (44.49, None, 0.1, "reproduced"),  # +0.10: exactly at the edge
        (44.29, None, 0.1, "reproduced"),  # -0.10: the other edge
        (44.50, None, 0.1, "failed"),  # +0.11: just above
        (44.2851, None, 0.1, "reproduced"),  # prints 44.29
        (44.2849, None, 0.1, "failed"),  # prints 44.28: -0.11
        (44.2849, 44.29, 0.1, "reproduced"),  # the result file's own 2-decimal value is what is compared
        (44.39, None, 0.0, "reproduced"),  # zero tolerance: exact match only
        (44.40, None, 0.0, "failed"),
        (44.14, None, 0.25, "reproduced"),  # -0.25 at a wider edge
        (44.13, None, 0.25, "failed"),
    ],
)
def test_tolerance_edges(manifest, measured, recorded_rounded, tolerance, expected):
    result = make_result("mcibi_r50_ade", "single", measured, miou_rounded=recorded_rounded)
    frame = report.build_report(manifest, [result], tolerance=tolerance, ids=["mcibi_r50_ade"]).to_frame()
    assert frame.set_index("protocol").loc["single", "status"] == expected


def test_binary_floats_would_misjudge_the_edge():
    # Why Δ is computed in decimals: the naive float comparison rejects a row printed as +0.10.
    assert abs(44.49 - 44.39) > 0.1
    measured = report.measured_rounded(make_result("m", "single", 44.49))
    delta, within = report.compare(measured, Decimal("44.39"), 0.1)
    assert str(delta) == "0.10" and within


def test_newest_result_wins_and_measured_only_protocol_is_listed(manifest):
    old = make_result("mcibi_r50_ade", "single", 40.0)
    new = make_result("mcibi_r50_ade", "single", 44.40, finished=datetime(2024, 6, 1, tzinfo=timezone.utc))
    flip = make_result("mcibi_r50_ade", "flip", 45.0)  # not a documented protocol of this row
    frame = report.build_report(manifest, [new, old, flip], ids=["mcibi_r50_ade"]).to_frame().set_index("protocol")
    assert list(frame.index) == ["single", "flip", "ms+flip"]
    assert frame.loc["single", "measured_rounded"] == 44.40 and frame.loc["single", "status"] == "reproduced"
    assert frame.loc["flip", "status"] == "blank-doc" and pd.isna(frame.loc["flip", "documented"])


def test_other_split_is_not_compared(manifest):
    # Cityscapes rows are documented on the test split (server); a local val number is not that.
    val = make_result("mcibi_r50_city", "ms+flip", 79.9, dataset="cityscapes", split="val")
    row = report.build_report(manifest, [val], ids=["mcibi_r50_city"]).rows[0]
    assert row["status"] == "non-comparable" and row["delta"] is None and "val" in row["note"]


def test_several_environments_are_listed(manifest):
    frame = report.build_report(manifest, scenario_results())
    envs = report.environments(frame)
    assert [[env["device"], env["cuda_version"], env["results"]] for env in envs] == [
        ["cpu", "", 7],
        ["NVIDIA H100 80GB HBM3", "12.4", 1],
    ]


def test_ids_restrict_rows_and_accept_aliases(manifest):
    frame = report.build_report(manifest, scenario_results(), ids=["v2_upernet_lip", "mcibi_resnet101_ade"]).to_frame()
    assert frame["model_id"].drop_duplicates().tolist() == ["mcibi_r101_ade", "v2_upernet_lip"]  # document order
    with pytest.raises(UnknownModelError):
        report.build_report(manifest, [], ids=["mcibi_r50_adek"])


def test_negative_tolerance_is_refused(manifest):
    with pytest.raises(ReproError, match="tolerance"):
        report.build_report(manifest, [], tolerance=-0.1)


# ------------------------------------------------------------------------------ per-class IoU


def test_per_class_section_worst_first(manifest):
    frame = report.build_report(manifest, scenario_results(), ids=["v2_upernet_lip"])
    text = report_render.render_markdown(frame)
    expected = (FIXTURES / "expected_per_class.md").read_text(encoding="utf-8")
    assert text.endswith(expected)
    # Without ids the section is not there.
    assert "Per-class IoU" not in report_render.render_markdown(report.build_report(manifest, scenario_results()))


def test_per_class_order_sorts_missing_last_and_keeps_ties_in_class_order():
    order = report_render.per_class_order({"a": 50.0, "b": None, "c": 10.0, "d": 50.0, "e": 0.0, "f": float("nan")})
    assert [name for name, _ in order] == ["e", "c", "a", "d", "b", "f"]


# ------------------------------------------------------------------------------ formats


def test_csv_parses_back(manifest):
    frame = report.build_report(manifest, scenario_results())
    parsed = pd.read_csv(io.StringIO(report_render.render_csv(frame)))
    assert len(parsed) == 9
    assert set(parsed.columns) == set(report.REPORT_COLUMNS) - {"per_class_iou"}
    assert parsed["status"].value_counts().to_dict() == {
        "reproduced": 2, "failed": 2, "not-run": 1, "blank-doc": 1, "server": 1, "partial": 1, "non-comparable": 1
    }
    row = parsed[(parsed["model_id"] == "mcibi_r50_ade") & (parsed["protocol"] == "ms+flip")].iloc[0]
    assert (row["documented"], row["measured_rounded"], row["delta"]) == (45.95, 45.84, -0.11)
    assert row["measured"] == pytest.approx(45.8449)


def test_json_parses_back(manifest):
    frame = report.build_report(manifest, scenario_results())
    records = json.loads(report_render.render_json(frame))
    assert isinstance(records, list) and len(records) == 9
    assert all(list(r) == report.REPORT_COLUMNS for r in records)
    by_key = {(r["model_id"], r["protocol"]): r for r in records}
    assert by_key[("v2_upernet_lip", "single")]["per_class_iou"] == LIP_CLASSES
    not_run = by_key[("v2_upernet_lip", "flip")]
    assert not_run["measured"] is None and not_run["delta"] is None and not_run["mark"] == "—"
    assert by_key[("v2_fcn_lip", "single")]["documented"] is None
    assert by_key[("mcibi_r50_ade", "single")]["delta"] == 0.1


class _AssetFinder(HTMLParser):
    """Collects tags and URL-bearing attributes of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("href", "src", "xlink:href", "srcset")]


def _external_assets(page: str) -> list[str]:
    finder = _AssetFinder()
    finder.feed(page)
    external = [u for u in finder.urls if not u.startswith(("#", "data:"))]
    external += [t for t in finder.tags if t in ("link", "script", "iframe")]
    # CSS/SVG references: only same-document ones (url(#clip), as matplotlib's SVG uses) are fine.
    external += re.findall(r"url\(\s*['\"]?(?!#)[^)]*\)", page)
    if "@import" in page:
        external.append("@import")
    return external


def test_html_is_self_contained(manifest):
    frame = report.build_report(manifest, scenario_results(), ids=["v2_upernet_lip"])
    page = report_render.render_html(frame, plot_svg=report_render.plot_svg_text(frame))
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert _external_assets(page) == []
    assert "<svg" in page and page.count("<table>") == 3  # LIP rows, environment, per-class
    assert "v2_upernet_lip" in page and "sunglasses" in page
    # The finder does see an external asset when there is one.
    assert _external_assets('<img src="https://example.com/a.png">') == ["https://example.com/a.png"]
    assert _external_assets("<style>a { background: url(https://x/y.png) }</style>") == ["url(https://x/y.png)"]


def test_html_escapes_cells(manifest):
    result = make_result("mcibi_r50_city", "ms+flip", None, status="server", submission="/tmp/<b>&.zip")
    page = report_render.render_html(report.build_report(manifest, [result]))
    assert "/tmp/&lt;b&gt;&amp;.zip" in page and "<b>" not in page


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_file(manifest, tmp_path, suffix):
    frame = report.build_report(manifest, scenario_results())
    path = tmp_path / "sub" / f"deltas{suffix}"
    report_render.plot_deltas(frame, path)
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    else:
        root = ElementTree.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert b"mcibi_r50_ade" in data  # the compared rows are labelled


def test_plot_without_compared_rows_and_bad_extension(manifest, tmp_path):
    frame = report.build_report(manifest, [])
    report_render.plot_deltas(frame, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ReproError, match=r"\.png or \.svg"):
        report_render.plot_deltas(frame, tmp_path / "plot.pdf")


# ------------------------------------------------------------------------------ the command


def test_cli_markdown_to_stdout(results_dir):
    result = invoke("--results", str(results_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout == (FIXTURES / "expected.md").read_text(encoding="utf-8")


def test_cli_strict_exit_codes(results_dir):
    strict = invoke("--results", str(results_dir), "--strict")
    assert strict.exit_code == 1
    error = strict.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: 2 rows outside tolerance ±0.10")
    assert "mcibi_r50_ade (ms+flip) Δ -0.11" in error[0] and "v2_upernet_lip (ms+flip) Δ -0.22" in error[0]
    assert "Traceback" not in strict.output
    # The report is still printed before the exit.
    assert "| mcibi_r50_ade | aspp | R-50-D8 | single |" in strict.stdout
    # A wider tolerance takes the -0.11 and -0.22 rows in: nothing fails.
    assert invoke("--results", str(results_dir), "--strict", "--tolerance", "0.25").exit_code == 0
    # Only passing rows selected: strict passes.
    assert invoke("--results", str(results_dir), "--strict", "mcibi_r101_ade", "v2_fcn_lip").exit_code == 0


def test_cli_names_the_next_step_for_a_failed_row(results_dir):
    result = invoke("--results", str(results_dir))
    assert result.exit_code == 0
    hint = [line for line in result.stderr.splitlines() if "not reproduced" in line]
    assert hint == ["2 rows not reproduced; why: `repro explain mcibi_r50_ade --protocol ms+flip` (and the others)"]
    assert "not reproduced" not in invoke("--results", str(results_dir), "mcibi_r101_ade").stderr


def test_cli_output_file_format_from_extension(results_dir, tmp_path):
    out = tmp_path / "report.csv"
    result = invoke("--results", str(results_dir), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "Summary: 9 rows: 2 reproduced" in result.stderr
    assert len(pd.read_csv(out)) == 9
    # --format wins over the extension.
    out_json = tmp_path / "report.txt"
    assert invoke("--results", str(results_dir), "--format", "json", "-o", str(out_json)).exit_code == 0
    assert len(json.loads(out_json.read_text(encoding="utf-8"))) == 9


def test_cli_html_with_plot(results_dir, tmp_path):
    page, plot = tmp_path / "report.html", tmp_path / "deltas.svg"
    result = invoke("--results", str(results_dir), "-o", str(page), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert ElementTree.parse(plot).getroot().tag.endswith("svg")
    text = page.read_text(encoding="utf-8")
    assert "<svg" in text and _external_assets(text) == []


def test_cli_bad_plot_extension_writes_nothing(results_dir, tmp_path):
    out = tmp_path / "report.md"
    result = invoke("--results", str(results_dir), "-o", str(out), "--plot", str(tmp_path / "plot.jpg"))
    assert result.exit_code == 1 and "error:" in result.stderr and not out.exists()


def test_cli_per_class_for_an_id(results_dir):
    result = invoke("--results", str(results_dir), "v2_upernet_lip")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith((FIXTURES / "expected_per_class.md").read_text(encoding="utf-8"))
    assert "mcibi_r50_ade" not in result.stdout


def test_cli_missing_empty_and_corrupt_results(tmp_path):
    missing = invoke("--results", str(tmp_path / "nope"))
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        f"error: results folder {tmp_path / 'nope'} does not exist (run `repro eval` first, or pass --results DIR)"
    )

    # An empty folder: one line on stderr, and the table of every row, not run (--measured-only: the line alone).
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("--results", str(empty))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f"no results in {empty} yet: run `repro eval ID` first, or pass --results DIR"]
    assert "Summary: 9 rows: 0 reproduced ✓, 0 failed ✗, 8 not run —, 1 without a documented value." in result.stdout
    measured = invoke("--results", str(empty), "--measured-only")
    assert measured.exit_code == 0 and measured.stdout == "" and measured.stderr == result.stderr

    # One damaged file: named in a note, the rest reported as usual.
    corrupt = tmp_path / "corrupt"
    write_result(make_result("mcibi_r50_ade", "single", 44.4), corrupt)
    (corrupt / "mcibi_r50_ade__flip.json").write_text('{"model_id": "mcibi_r50_ade", ', encoding="utf-8")
    bad = invoke("--results", str(corrupt))
    assert bad.exit_code == 0, bad.output
    notes = [line for line in bad.stdout.splitlines() if line.startswith("Note: ")]
    assert len(notes) == 1 and "mcibi_r50_ade__flip.json: not a repro result file" in notes[0]
    assert "| mcibi_r50_ade | aspp | R-50-D8 | single | 44.39 | 44.39 | 44.40 | +0.01 | ✓ |" in bad.stdout
    as_json = invoke("--results", str(corrupt), "--format", "json")
    assert as_json.exit_code == 0 and len(json.loads(as_json.stdout)) == 9
    assert "note: skipped " in as_json.stderr and "mcibi_r50_ade__flip.json" in as_json.stderr
    assert "Traceback" not in bad.output + as_json.output


def test_cli_unknown_id(results_dir):
    result = invoke("--results", str(results_dir), "mcibi_r50_adek")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: unknown model id 'mcibi_r50_adek'; did you mean mcibi_r50_ade")


def test_bundled_manifest_all_not_run(tmp_path):
    zoo = load_manifest()
    frame = report.build_report(zoo, [])
    assert len(frame) == sum(len(entry.documented) for entry in zoo.entries)
    assert {row["status"] for row in frame} == {"not-run"}
    text = report_render.render_markdown(frame)
    # Both documents' sections appear as headings, in document order.
    order = [text.index(h) for h in ("## MCIBI (ICCV 2021)", "### Performance", "## MemoryNetV2 / MCIBI++ (TPAMI 2022)",
                                     "### Results of Different Frameworks", "### SOTA Results")]
    assert order == sorted(order)


# ------------------------------------------------------------------------------ variants, upstream now


def test_upstream_now_column_and_match(manifest):
    # mcibi_r50_ade: ms+flip documented 45.95, upstream now 46.20 (fixture manifest).
    matches_now = make_result("mcibi_r50_ade", "ms+flip", 46.18)
    row = report.build_report(manifest, [matches_now], ids=["mcibi_r50_ade"]).to_frame().set_index("protocol").loc["ms+flip"]
    assert (row["status"], row["mark"], row["delta"]) == ("upstream-now", "upstream-now", 0.23)
    assert (row["upstream_now"], row["upstream_now_date"], row["upstream_now_commit"]) == (46.20, "2023-11-23", "91c9d8c8aa")
    assert row["note"] == "matches upstream's current number (2023-11-23, 91c9d8c8): file behind the URL likely replaced"
    # Outside both the document and upstream's current number: a plain failure.
    missing_both = make_result("mcibi_r50_ade", "ms+flip", 46.40)
    row = report.build_report(manifest, [missing_both], ids=["mcibi_r50_ade"]).to_frame().set_index("protocol").loc["ms+flip"]
    assert (row["status"], row["note"]) == ("failed", "")
    # Rows without upstream_now have no value; an explained row does not fail --strict.
    built = report.build_report(manifest, [matches_now])
    frame = built.to_frame()
    assert frame[~frame["model_id"].isin(["mcibi_r50_ade", "v2_fcn_lip"])]["upstream_now"].isna().all()
    assert frame.set_index(["model_id", "protocol"]).loc[("v2_fcn_lip", "single"), "upstream_now"] == 41.20
    assert report.strict_failure(built) is None and "1 upstream-now" in report.summary_line(built)
    assert "upstream-now: outside, but within the tolerance of upstream's current number" in report_render.render_markdown(built)
    assert "upstream-now" not in report_render.render_markdown(report.build_report(manifest, [missing_both]))
    assert report.strict_failure(report.build_report(manifest, [missing_both])) is not None
    # A blank document cell with a number upstream now: said, without the "replaced" guess.
    blank = report.build_report(manifest, [make_result("mcibi_r50_ade", "flip", 45.0)], ids=["mcibi_r50_ade"])
    assert blank.to_frame().set_index("protocol").loc["flip", "note"] == "no documented value"
    fcn = report.build_report(manifest, scenario_results(), ids=["v2_fcn_lip"]).rows[0]  # 41.23, upstream 41.20
    assert (fcn["status"], fcn["note"]) == (
        "blank-doc", "no documented value; matches upstream's current number (2022-09-10, 9293dd4d)"
    )


def test_variant_column_and_notes(manifest):
    # mcibi_r101_ade's default forward is training-era (fixture manifest); single documents 45.66.
    era = make_result("mcibi_r101_ade", "single", 45.70, variant="training-era")
    head = make_result("mcibi_r101_ade", "single", 45.70, finished=datetime(2025, 1, 1, tzinfo=timezone.utc))

    def single_row(results):
        return report.build_report(manifest, results, ids=["mcibi_r101_ade"]).to_frame().set_index("protocol").loc["single"]

    row = single_row([era])
    assert (row["status"], row["variant"], row["default_variant"], row["note"]) == (
        "reproduced", "training-era", "training-era", ""
    )
    row = single_row([head])
    assert (row["status"], row["variant"]) == ("reproduced", "upstream-head")
    assert row["note"] == "upstream-head forward, not this row's default (training-era)"
    # Both: the default forward's result counts, although the other one is newer.
    assert single_row([era, head])["variant"] == "training-era"
    # The default forward misses, the other would have matched: the note says so.
    era_off = make_result("mcibi_r101_ade", "single", 46.50, variant="training-era")
    row = single_row([era_off, make_result("mcibi_r101_ade", "single", 45.66)])
    assert (row["status"], row["variant"]) == ("failed", "training-era")
    assert row["note"] == "the upstream-head forward measured 45.66: within tolerance"
    # Rows whose only forward is upstream-head get no note.
    other = report.build_report(manifest, [make_result("mcibi_r50_ade", "single", 44.39)], ids=["mcibi_r50_ade"])
    assert other.to_frame().set_index("protocol").loc["single", "note"] == ""


def test_result_file_without_variant_reads_as_upstream_head(manifest, tmp_path):
    path = write_result(make_result("mcibi_r50_ade", "single", 44.39), tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["variant"]
    path.write_text(json.dumps(data), encoding="utf-8")
    frame = report.build_report(manifest, tmp_path, ids=["mcibi_r50_ade"]).to_frame()
    assert frame.set_index("protocol").loc["single", "variant"] == "upstream-head"


def test_subset_partial_note(manifest):
    subset = make_result(
        "v2_upernet_lip", "single", 30.0, dataset="lip", status="partial", num_images=2, num_images_total=2,
        num_images_official=10000, partial_reason="subset",
    )
    row = report.build_report(manifest, [subset], ids=["v2_upernet_lip"]).to_frame().set_index("protocol").loc["single"]
    assert (row["status"], row["note"]) == ("partial", "2/10000 images (subset of the dataset), not compared")


def test_a_smoke_run_does_not_stand_for_a_run_over_the_whole_subset(manifest):
    # Both partial: the whole 3-image subset, then a newer --limit 1 run on it. The row shows the
    # 3-image result (more images beat newer among partials), and the smoke run alone says what it is.
    whole = make_result(
        "v2_upernet_lip", "single", 30.0, dataset="lip", status="partial", num_images=3, num_images_total=3,
        num_images_official=10000, partial_reason="subset",
    )
    smoke = whole.model_copy(update={
        "miou": 20.0, "num_images": 1, "limit": 1, "finished": whole.finished + timedelta(days=1),
    })
    row = report.build_report(manifest, [smoke, whole], ids=["v2_upernet_lip"]).row("v2_upernet_lip", "single")
    assert (row["status"], row["measured"]) == ("partial", 30.0)
    assert row["note"].startswith("3/10000 images (subset of the dataset), not compared")
    only_smoke = report.build_report(manifest, [smoke], ids=["v2_upernet_lip"]).row("v2_upernet_lip", "single")
    assert only_smoke["note"] == "1/10000 images (--limit on a subset of 3), not compared"


def test_document_title_in_every_format(manifest):
    frame = report.build_report(manifest, scenario_results())
    assert {row["document"] for row in frame} == {"MCIBI (ICCV 2021)", "MemoryNetV2 / MCIBI++ (TPAMI 2022)"}
    texts = {
        "md": report_render.render_markdown(frame), "csv": report_render.render_csv(frame), "json": report_render.render_json(frame),
        "html": report_render.render_html(frame),
    }
    for fmt, text in texts.items():
        assert "MemoryNetV2 / MCIBI++ (TPAMI 2022)" in text, fmt
        assert "memorynetv2.md" not in text and "mcibi.md" not in text, fmt  # the file names of the fixture
    assert json.loads(texts["json"])[0]["document"] == "MCIBI (ICCV 2021)"
    assert pd.read_csv(io.StringIO(texts["csv"]))["document"].iloc[-1] == "MemoryNetV2 / MCIBI++ (TPAMI 2022)"


# ------------------------------------------------------------------------------ measured-only, default folder


def _one_bundled_result(folder: Path) -> Path:
    write_result(make_result("mcibi_deeplabv3_r50_ade20k", "single", 44.39), folder)
    return folder


def test_every_row_is_kept_whatever_share_has_a_result():
    """Issue 25 #2: the report keeps its shape as the work progresses (one result of 85 rows
    gives 85 rows, in every format); only --measured-only leaves rows out."""
    zoo = load_manifest()
    result = make_result("mcibi_deeplabv3_r50_ade20k", "single", 44.39)
    total = sum(len(entry.documented) for entry in zoo.entries)
    frame = report.build_report(zoo, [result])
    assert len(frame) == total and frame.hidden == [] and report.hidden_line(frame) is None
    assert len(report.build_report(zoo, [])) == total
    assert not hasattr(report, "AUTO_MEASURED_ONLY")
    records = json.loads(report_render.render_json(frame))
    assert len(records) == total and sum(r["status"] == "not-run" for r in records) == total - 1
    assert len(pd.read_csv(io.StringIO(report_render.render_csv(frame)))) == total


def test_the_counts_of_the_summary_and_of_the_rows_not_shown_agree():
    """Issue 25 #3: "65 not run, 17 without a documented value" then "82 rows not run" was two
    definitions of "not run"; the line on the rows --measured-only leaves out uses the summary's."""
    zoo = load_manifest()
    result = make_result("mcibi_deeplabv3_r50_ade20k", "single", 44.39)
    total = sum(len(entry.documented) for entry in zoo.entries)
    blank = sum(value is None for entry in zoo.entries for value in entry.documented.values())
    frame = report.build_report(zoo, [result], measured_only=True)
    assert [row["model_id"] for row in frame] == ["mcibi_deeplabv3_r50_ade20k"]
    assert len(frame.hidden) == total - 1
    not_run = total - 1 - blank
    summary = (f"Summary: {total} rows: 1 reproduced ✓, 0 failed ✗, "
               f"{not_run} not run —, {blank} without a documented value.")
    assert report.summary_line(frame) == summary
    assert report.summary_line(report.build_report(zoo, [result])) == summary  # hidden or shown: the same counts
    line = f"Not shown: {not_run} not run —, {blank} without a documented value (--all-rows shows them)."
    assert report.hidden_line(frame) == line and len(line) <= 80
    assert line in report_render.render_markdown(frame) and line in report_render.render_html(frame)
    # Explicitly: only the measured rows, whatever the share (the fixture: 8 of 9 rows measured).
    assert len(report.build_report(load_manifest(MANIFEST), scenario_results(), measured_only=True)) == 8


def test_cli_measured_only_flags(tmp_path):
    folder = _one_bundled_result(tmp_path / "results")
    total = sum(len(entry.documented) for entry in load_manifest().entries)
    default = runner.invoke(app, ["report", "--results", str(folder)])
    assert default.exit_code == 0, default.output
    assert default.stdout.count("| mcibi_deeplabv3_r50_ade20k |") == 2 and "Not shown" not in default.output
    every = runner.invoke(app, ["report", "--results", str(folder), "--all-rows"])
    assert every.stdout == default.stdout
    # CSV and JSON keep every row by default; asked for the measured rows only, the line goes to stderr.
    csv = runner.invoke(app, ["report", "--results", str(folder), "--format", "csv"])
    assert len(pd.read_csv(io.StringIO(csv.stdout))) == total and csv.stderr == ""
    measured = runner.invoke(app, ["report", "--results", str(folder), "--format", "csv", "--measured-only"])
    assert len(pd.read_csv(io.StringIO(measured.stdout))) == 1 and "--all-rows shows them" in measured.stderr
    md = runner.invoke(app, ["report", "--results", str(folder), "--measured-only"])
    assert md.stdout.count("| mcibi_deeplabv3_r50_ade20k |") == 1 and "Not shown: " in md.stdout
    fixture_results = tmp_path / "fixture"
    for result in scenario_results():
        write_result(result, fixture_results)
    measured = invoke("--results", str(fixture_results), "--measured-only", "--format", "json")
    assert len(json.loads(measured.stdout)) == 8 and "Not shown: 1 not run — (--all-rows" in measured.stderr


def test_cli_default_results_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_RESULTS", raising=False)
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    # Nothing evaluated yet: the default folder does not exist; not an error, and it is named.
    fresh = runner.invoke(app, ["report", "--format", "csv"])
    assert fresh.exit_code == 0, fresh.output
    assert f"no results yet: {tmp_path / 'home' / 'results'} does not exist" in fresh.stderr
    # <cache>/results, then $REPRO_RESULTS.
    _one_bundled_result(tmp_path / "home" / "results")
    found = runner.invoke(app, ["report", "--format", "json", "--measured-only"])
    assert [r["model_id"] for r in json.loads(found.stdout)] == ["mcibi_deeplabv3_r50_ade20k"]
    monkeypatch.setenv("REPRO_RESULTS", str(tmp_path / "elsewhere"))
    _one_bundled_result(tmp_path / "elsewhere")
    (tmp_path / "home" / "results" / "mcibi_deeplabv3_r50_ade20k__single.json").unlink()
    assert len(json.loads(runner.invoke(app, ["report", "--format", "json", "--measured-only"]).stdout)) == 1


# ------------------------------------------------------------------------------ an empty plot says why


def test_plot_empty_reason(manifest):
    partial = [
        make_result("mcibi_r101_ade", "single", 50.0, status="partial", num_images=10, limit=10),
        make_result("v2_upernet_lip", "single", 50.0, status="partial", num_images=2, num_images_total=2,
                    partial_reason="subset", num_images_official=10000),
    ]
    reason = report_render.plot_empty_reason(report.build_report(manifest, partial))
    assert reason == "the plot is empty: all 2 results are partial (--limit or a subset: not compared)"
    assert report_render.plot_empty_reason(report.build_report(manifest, [])) == (
        "the plot is empty: no results yet (run `repro eval` first)"
    )
    mixed = [partial[0], make_result("mcibi_r101_ade", "ms+flip", 47.3, precision="bf16")]
    assert report_render.plot_empty_reason(report.build_report(manifest, mixed)) == (
        "the plot is empty: no result is compared (1 partial (--limit or a subset: not compared); "
        "1 non-comparable (another split or precision))"
    )
    assert report_render.plot_empty_reason(report.build_report(manifest, scenario_results())) is None


def test_cli_plot_of_partial_results_says_why(tmp_path):
    folder = tmp_path / "results"
    write_result(make_result("mcibi_r101_ade", "single", 50.0, status="partial", num_images=10, limit=10), folder)
    plot = tmp_path / "deltas.svg"
    result = invoke("--results", str(folder), "--plot", str(plot), "-o", str(tmp_path / "r.md"))
    assert result.exit_code == 0, result.output
    assert "the plot is empty: the only result is partial (--limit or a subset: not compared)" in result.stderr
    assert b"the only result is partial" in plot.read_bytes()  # and the image says it too
