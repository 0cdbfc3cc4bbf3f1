"""The model variant through evaluation: `repro eval --variant`, recorded in the result, part of
the resume fingerprint (progress and finished results of one forward never serve the other)."""

from __future__ import annotations

import json

from synthetic_data import make_lip
from test_cli_eval import MODEL, small_setup  # noqa: F401 - fixture; MODEL has one forward: both names run it
from test_evaluate import ModelFactory, lip_job, options
from typer.testing import CliRunner

from repro.cli import app
from repro.engine import run_job, setup_distributed
import torch

from repro.engine.progress import changed_conditions, run_conditions

runner = CliRunner()


def test_each_variant_is_its_own_evaluation(tmp_path):
    make_lip(tmp_path / "LIP", n_val=2)
    factory = ModelFactory(20)
    first = lip_job(tmp_path / "LIP", factory=factory)
    assert first.variant == "upstream-head"
    assert run_job(first, options(tmp_path)).variant == "upstream-head"
    other = lip_job(tmp_path / "LIP", factory=factory)
    other.variant = "training-era"
    ranks = setup_distributed("cpu")
    ids = list(first.dataset.ids)
    cpu = torch.device("cpu")
    was = run_conditions(first, options(tmp_path), ranks, ids, cpu, None)
    now = run_conditions(other, options(tmp_path), ranks, ids, cpu, None)
    assert changed_conditions(was, now) == ["the forward upstream-head, now training-era"]
    result = run_job(other, options(tmp_path))  # the finished upstream-head result is not reused
    assert result.variant == "training-era" and factory.calls == 2
    # the row's default forward keeps the plain name; the other one gets its own file, so both stay
    default = json.loads((tmp_path / "results" / "tiny_lip__ms+flip.json").read_text())
    written = json.loads((tmp_path / "results" / "tiny_lip__ms+flip__training-era.json").read_text())
    assert default["variant"] == "upstream-head" and written["variant"] == "training-era"
    assert run_job(other, options(tmp_path)).variant == "training-era" and factory.calls == 2  # resumed, not redone


def test_cli_variant_is_recorded_and_an_unknown_one_refused(small_setup):
    args = ["eval", MODEL, "--protocol", "single", "--checkpoint", str(small_setup["checkpoint"]), "--data-root",
            str(small_setup["data"]), "--device", "cpu", "--workers", "0", "--limit", "1", "--results", str(small_setup["out"])]

    bad = runner.invoke(app, [*args, "--variant", "2021"])
    assert bad.exit_code == 2 and "training-era" in bad.output and "Traceback" not in bad.output

    result = runner.invoke(app, [*args, "--variant", "training-era"])
    assert result.exit_code == 0, result.output
    written = json.loads((small_setup["out"] / f"{MODEL}__single__training-era__subset-limit1.json").read_text())
    assert written["variant"] == "training-era"
    assert f"{MODEL}__single__training-era__subset-limit1.json" in result.output  # eval prints where it wrote
