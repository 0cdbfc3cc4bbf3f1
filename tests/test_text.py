"""Counts in words (repro.text): "1 image", never "1 images", in every message that counts."""

from __future__ import annotations

import synthetic_data as sd
from typer.testing import CliRunner

from repro.cli import app
from repro.text import counted, plural

runner = CliRunner(env={"COLUMNS": "100"})


def test_counted_says_one_thing_and_many_things():
    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "class") == "1 class" and counted(3, "class") == "3 classes"
    assert plural(1, "run") == "run" and plural(12, "run") == "runs"


def test_a_listing_of_one_model_says_1_model():
    result = runner.invoke(app, ["list", "--dataset", "lip", "--backbone", "swin"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "1 model"


def test_the_plan_of_one_run_on_one_image_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    sd.make_lip(tmp_path / "data" / "LIP", n_val=1)
    result = runner.invoke(app, ["eval", "mcibi_deeplabv3_r50_lip", "--protocol", "single", "--dry-run",
                                 "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plan: 1 run on ")
    assert lines[1].startswith("  dataset lip val: 1 image (a subset of the official 10000) at ")
    assert "ready: 0 of 1 run;" in result.stdout and "1 run waits for files" in result.stdout
    assert "images" not in lines[1] and "run(s)" not in result.stdout
