"""`repro diff A B` on synthetic runs: Δ, per-class and per-image changes, pixel agreement,
the conditions that differ, JSON, and refusal of two different rows or protocols."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from explain_support import MODELS, make_scene_dataset, planted_run
from PIL import Image
from typer.testing import CliRunner

from repro.cli import app
from repro.explain.diff import diff_results
from repro.results.files import read_result

ADE = MODELS["ade20k"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("diff")
    folder = make_scene_dataset("ade20k", root / "data", n=8)
    a = planted_run(root / "a", "ade20k", folder)
    b = planted_run(root / "b", "ade20k", folder, perturb=0.03, seed=2, precision="tf32", device="cuda:0 (NVIDIA H200)")
    return a, b


def _agreement(a: Path, b: Path) -> float:
    fa, fb = Path(read_result(a).predictions_dir), Path(read_result(b).predictions_dir)
    same = total = 0
    for file in sorted(fa.glob("*.png")):
        pa, pb = np.asarray(Image.open(file)), np.asarray(Image.open(fb / file.name))
        same, total = same + int((pa == pb).sum()), total + pa.size
    return same / total


def test_diff_of_two_runs(runs):
    a, b = runs
    d = diff_results(a, b)
    assert d.delta_miou == read_result(b).miou - read_result(a).miou
    assert {w for w, _, _ in d.conditions} == {"precision", "device"}
    assert ("precision", "fp32", "tf32") in d.conditions
    deltas = [abs(c.delta) for c in d.classes if c.delta is not None]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    moved = [abs(i.delta) for i in d.images]
    assert moved == sorted(moved, reverse=True) and len(d.images) == 8
    assert d.agreement == pytest.approx(_agreement(a, b), abs=0) and 0.9 < d.agreement < 1
    assert d.agreement_images == 8


def test_diff_text_and_json_from_the_cli(runs):
    a, b = runs
    out = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert out.exit_code == 0, out.output
    assert "Δ (B - A)" in out.output and "Per-class IoU, largest change first" in out.output
    assert "pixels predicted alike" in out.output and "Images whose mIoU moved most" in out.output
    assert all(len(line) <= 80 for line in out.output.splitlines() if "/" not in line)
    out = CliRunner().invoke(app, ["diff", str(a), str(b), "--format", "json"])
    data = json.loads(out.output)
    assert data["model_id"] == ADE and data["delta_miou"] == read_result(b).miou - read_result(a).miou
    assert {c["what"] for c in data["conditions"]} == {"precision", "device"}


def test_diff_by_id_with_a_results_folder_per_side(tmp_path):
    folder = make_scene_dataset("ade20k", tmp_path / "data", n=6)
    planted_run(tmp_path / "a", "ade20k", folder)
    planted_run(tmp_path / "b", "ade20k", folder, predictions=False, seed=3, perturb=0.01)
    out = CliRunner().invoke(app, ["diff", ADE, ADE, "--results", str(tmp_path / "a"), "--results", str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    assert "B saved no predictions" in out.output
    out = CliRunner().invoke(app, ["diff", ADE, ADE, "--results", str(tmp_path / "a")])
    assert out.exit_code == 2 and "same file" in out.output


def test_two_rows_or_protocols_exit_2(tmp_path, runs):
    ade = make_scene_dataset("ade20k", tmp_path / "ade", n=6)
    cityscapes = make_scene_dataset("cityscapes", tmp_path / "cs", n=6)
    single = planted_run(tmp_path / "x", "ade20k", ade)
    flip = planted_run(tmp_path / "y", "ade20k", ade, protocol="flip")
    other_row = planted_run(tmp_path / "z", "cityscapes", cityscapes)
    for a, b in ((single, flip), (single, other_row)):
        out = CliRunner().invoke(app, ["diff", str(a), str(b)])
        assert out.exit_code == 2, out.output
        assert out.output.count("\n") == 1 and "two runs of one row and protocol" in out.output


@pytest.mark.parametrize("columns", ["80", "200"])
def test_a_long_differing_value_is_wrapped_whole_not_cut(runs, tmp_path, columns):
    """The engine settings differ in their last key: the text shows both values whole, wrapped."""
    import shutil

    a, _ = runs
    engine = {f"setting_{i:02d}": "same" for i in range(12)}
    sides = []
    for side, batch in (("x", 4), ("y", 1)):
        folder = tmp_path / side
        folder.mkdir()
        data = json.loads(a.read_text())
        data["engine"] = {**engine, "zz_max_batch": batch}
        (folder / a.name).write_text(json.dumps(data))
        shutil.copy(a.parent / data["evidence"], folder / data["evidence"])
        sides.append(folder / a.name)
    out = CliRunner(env={"COLUMNS": columns}).invoke(app, ["diff", *map(str, sides)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("engine"))
    block = lines[start:lines.index("", start)]
    assert "…" not in "".join(block) and max(map(len, block)) <= int(columns)
    words = " ".join(block).split()
    assert "zz_max_batch=4" in words and "zz_max_batch=1" in words  # the value that differs, whole
    assert words.count("setting_11=same,") == 2
