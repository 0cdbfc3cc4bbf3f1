"""The HTML report and its explain pages in a real browser (headless Chromium over CDP): every
picture loads, nothing is cut off at 1280 px, every explain link lands, no console errors.

Skipped only where Chromium is missing outside CI; under CI=true a missing browser fails
(`.ci/run` installs Debian's `chromium`). Set REPRO_SCREENSHOTS=DIR to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from browser_support import LAYOUT_CHECK, Browser, find_chromium
from explain_support import MODELS, make_scene_dataset, planted_run
from typer.testing import CliRunner

from repro.cli import app

WIDTH = 1280


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed, and under CI the browser test must run (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return binary


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Three measured rows: with evidence and predictions, with evidence only, and an old result."""
    root = tmp_path_factory.mktemp("browser")
    ade = make_scene_dataset("ade20k", root / "ade", n=8)
    cityscapes = make_scene_dataset("cityscapes", root / "cs", n=6)
    folder = root / "results"
    planted_run(folder, "ade20k", ade, "double-reduction")
    planted_run(folder, "cityscapes", cityscapes, "label-ids", predictions=False)
    old = planted_run(folder, "ade20k", ade, protocol="ms+flip")
    data = json.loads(old.read_text())
    data["evidence"] = data["evidence_sha256"] = None  # written before evidence existed
    old.write_text(json.dumps(data))
    return folder


def _keep(shot: Path) -> None:
    keep = os.environ.get("REPRO_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def _check_page(browser: Browser, page: Path, shot: Path) -> dict:
    browser.open(page.as_uri())
    layout = browser.evaluate(LAYOUT_CHECK)
    assert browser.console_errors() == []
    assert layout["viewport"] == WIDTH
    assert layout["images"], "no pictures on the page"
    broken = [img["alt"] for img in layout["images"] if not (img["complete"] and img["natural"] > 0)]
    assert broken == []
    assert [img["alt"] for img in layout["images"] if img["right"] > WIDTH] == []
    assert layout["scrollWidth"] <= WIDTH and layout["wide"] == []
    assert [link["href"] for link in layout["links"] if not link["found"]] == []
    _keep(browser.screenshot(shot))
    return layout


def test_report_with_explain_pages_in_chromium(chromium, results, tmp_path):
    page = tmp_path / "report.html"
    out = CliRunner().invoke(app, ["report", "--format", "html", "--results", str(results), "-o", str(page)])
    assert out.exit_code in (0, 1), out.output  # 1: rows that do not reproduce (they do not, here)
    with Browser(chromium, width=WIDTH) as browser:
        layout = _check_page(browser, page, tmp_path / "report.png")
    explained = {link["href"] for link in layout["links"] if link["href"].startswith("#explain-")}
    assert explained == {f"#explain-{MODELS['ade20k']}-single", f"#explain-{MODELS['ade20k']}-ms-flip",
                         f"#explain-{MODELS['cityscapes']}-single"}
    text = page.read_text()
    assert "zero-label reduction applied twice" in text and "labelIds" in text  # the causes, on their pages
    assert "no per-image evidence" in text  # the old result says what is missing


def test_explain_page_in_chromium(chromium, results, tmp_path):
    out = CliRunner().invoke(app, ["explain", MODELS["ade20k"], "--results", str(results),
                                   "--output", str(tmp_path / "explain"), "--images", "3"])
    assert out.exit_code == 0, out.output
    with Browser(chromium, width=WIDTH) as browser:
        layout = _check_page(browser, tmp_path / "explain" / "index.html", tmp_path / "explain.png")
    assert len(layout["images"]) == 5  # per-class IoU, confusion, three worst images
