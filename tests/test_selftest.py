"""`repro selftest` on the CPU: fixtures, pipeline, failure lines, the recorded outcome."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from repro import numerics, selftest
from repro.cli import app

runner = CliRunner()
SMALL = selftest.Family("MCIBI++ R-50 (no context)", "mcibiplusplus_resnet50os8_cityscapes", quick=True)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def small(monkeypatch):
    """One cheap family and two protocol kinds (whole and slide), to keep the default suite fast."""
    monkeypatch.setattr(selftest, "FAMILIES", (SMALL,))
    kept = {name: selftest.PIPELINE_PROTOCOLS[name] for name in ("flip", "slide-ms+flip")}
    monkeypatch.setattr(selftest, "PIPELINE_PROTOCOLS", kept)


def _perturbed_build(original):
    def build(config):
        model = original(config)
        with torch.no_grad():
            first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
            first_conv.weight.mul_(1.01)  # a 1% error in one early layer
        return model

    return build


def test_every_family_has_its_fixture():
    assert len(selftest.FAMILIES) >= 11 and len({f.config for f in selftest.FAMILIES}) == len(selftest.FAMILIES)
    assert selftest.fixture_input().shape == (1, 3, 75, 113)
    for family in selftest.FAMILIES:
        assert selftest.fixture_logits(family.config).dim() == 4
    assert {f.name for f in selftest.families(quick=True)} < {f.name for f in selftest.FAMILIES}


def test_small_selftest_passes_records_and_reports(home, small, tmp_path):
    result = runner.invoke(app, ["selftest", "--device", "cpu", "--results", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("recorded: ")]  # a path
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert any(line.startswith("  ok    MCIBI++ R-50") for line in lines)
    assert "selftest passed on cpu" in result.output
    assert (tmp_path / "out" / "cpu" / "report.md").is_file()  # the result files went through repro.report

    recorded = json.loads((home / "selftest" / "cpu.json").read_text())
    assert recorded["passed"] is True and recorded["device"] == "cpu"
    assert recorded["environment"]["torch"] == torch.__version__
    (arch,) = [c for c in recorded["checks"] if c["kind"] == "architecture"]
    assert 0 <= arch["values"]["cpu-fixture"] <= selftest.TOLERANCE
    pipeline = [c for c in recorded["checks"] if c["kind"] == "pipeline"]
    assert [c["subject"] for c in pipeline] == ["flip", "slide-ms+flip"]
    assert all(c["values"]["cpu"] == pytest.approx(c["values"]["reference"], abs=1e-9) for c in pipeline)
    latest = selftest.latest_selftest("cpu")
    assert latest["passed"] is True and latest["path"].endswith("cpu.json") and latest["date"] == recorded["date"]


def test_a_perturbed_model_fails_with_a_clear_line(home, small, monkeypatch):
    monkeypatch.setattr(selftest, "build_filled", _perturbed_build(selftest.build_filled))
    result = runner.invoke(app, ["selftest", "--device", "cpu"])
    assert result.exit_code == 1
    assert "  FAIL  MCIBI++ R-50 (no context)" in result.output
    assert "cpu-fixture" in result.output and "> bar 1e-04" in result.output
    assert "selftest FAILED (1 of 3 checks)" in result.output
    assert "Traceback" not in result.output
    assert json.loads((home / "selftest" / "cpu.json").read_text())["passed"] is False


def test_a_broken_flip_in_the_engine_fails_the_pipeline(tmp_path, monkeypatch):
    import repro.inference.predictor

    monkeypatch.setattr(repro.inference.predictor, "swap_channel_pairs", lambda scores, pairs: scores)
    check = selftest.check_pipeline("flip", torch.device("cpu"), tmp_path, selftest._pipeline_model_id())
    assert not check.passed and "mIoU differs" in check.note
    assert check.values["cpu"] != check.values["reference"]


def test_a_nan_on_the_device_fails_the_architecture_check():
    """NaN logits must fail: max() of {'cpu-fixture': small, 'cuda-cpu': nan} would be the small one."""
    assert selftest.relative_difference(torch.tensor([float("nan"), 1.0]), torch.tensor([1.0, 1.0])) == float("inf")
    assert selftest.relative_difference(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])) == 0.0


def test_a_nan_miou_fails_the_pipeline(tmp_path, monkeypatch):
    from types import SimpleNamespace

    # the CPU engine and the reference agree, the GPU engine gives NaN: max/min would skip it
    monkeypatch.setattr(selftest, "_engine_miou", lambda name, dataset, device, output, model_id:
                        SimpleNamespace(miou=50.0 if device.type == "cpu" else float("nan"), num_images=3))
    monkeypatch.setattr(selftest, "reference_miou", lambda name, dataset, count: 50.0)
    check = selftest.check_pipeline("flip", torch.device("cuda"), tmp_path, "any")
    assert not check.passed


def test_reduced_precision_is_warned():
    active = numerics.switches()
    saved = active.saved()
    torch.set_float32_matmul_precision("medium")  # TF32 cuBLAS matmuls, bf16 oneDNN ones
    try:
        reduced = active.saved()
        warnings = selftest.numerics_warnings()
        with selftest.strict_fp32():
            assert numerics.current_tf32() == (False, False)
            assert selftest.numerics_warnings() == []
        assert active.saved() == reduced  # restored
    finally:
        active.restore(saved)
    assert any("matmuls may run in TF32" in w for w in warnings)
    assert any("bf16" in w or "'medium'" in w for w in warnings)


def test_a_bad_device_is_one_line(home):
    result = runner.invoke(app, ["selftest", "--device", "tpu"])
    assert result.exit_code == 1 and result.output.strip() == "error: bad device 'tpu'; use auto, cpu, cuda or cuda:N"


def test_record_names_and_missing_record(home):
    assert selftest.selftest_record_path("cuda:0 (NVIDIA H200)").name == "cuda-0.json"
    assert selftest.selftest_record_path("cpu").name == "cpu.json"
    assert selftest.latest_selftest("cuda:1") is None


@pytest.mark.slow
def test_quick_selftest_on_cpu_passes(home):
    result = runner.invoke(app, ["selftest", "--quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.count("  ok  ") == len(selftest.families(quick=True)) + len(selftest.PIPELINE_PROTOCOLS)


@pytest.mark.slow
def test_gpu_check_script_runs_tiny_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --tiny: selftest --quick, the loader steps and one small case in
    fp32 / tf32 / tf32-all beside upstream's loop."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "REPRO_HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", str(script), "--tiny"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    (case,) = figures["cases"]
    assert case["case"] == "ade20k" and case["reference"]["seconds_per_image"] > 0
    # upstream's loop in fp32 and with PyTorch's default TF32 (run as fp32 here: no TF32 on a CPU)
    assert case["reference_tf32"]["arithmetic"] == "fp32 (no TF32 on cpu)" and figures["tf32_available"] is False
    assert case["reference_tf32"]["argmax_agreement_percent"] == 100.0
    assert [row["setting"] for row in case["settings"]] == ["nchw", "tf32", "tf32-all"]
    assert [row["precision"] for row in case["settings"]] == ["fp32", "tf32", "tf32-all"]
    for row in case["settings"]:
        assert row["argmax_agreement_percent"] == 100.0 and row["seconds_per_image"] > 0
        assert row["speedup"] > 0 and row["speedup_vs_tf32_loop"] > 0
    # the thread loader: two run_job evaluations in one process, then two models in one command
    assert [e2e["label"] for e2e in figures["e2e"]] == ["e2e run 1 of 2", "e2e run 2 of 2"]
    for e2e in figures["e2e"]:  # a whole evaluation through the engine: the reference loop's mIoU
        assert e2e["engine_miou"] == pytest.approx(e2e["reference_miou"], abs=1e-9)
        assert e2e["result_perf"]["seconds_per_image"] > 0
    cli = figures["loader_cli"]
    assert cli["exit_code"] == 0 and len(cli["result_files"]) == 2, cli["output_tail"]
    selftest_record = json.loads((tmp_path / "out" / "selftest.json").read_text())
    assert selftest_record["passed"] is True and selftest_record["tf32_note"].startswith("skipped")


# -- TF32 against fp32 (issue 17): measured on a GPU, skipped with a note on the CPU ---------------


def test_logit_agreement_measures_the_difference_and_the_argmax():
    reference = torch.zeros(1, 3, 2, 2)
    reference[0, 0] = 2.0  # class 0 everywhere
    other = reference.clone()
    other[0, 1, 0, 0] = 3.0  # one pixel of four flips to class 1
    found = selftest.logit_agreement(reference, other)
    assert found["max_logit_diff"] == pytest.approx(1.5)  # 3 / max|ref| 2
    assert found["argmax_agreement_percent"] == pytest.approx(75.0)
    same = selftest.logit_agreement(reference, reference)
    assert same == {"max_logit_diff": 0.0, "argmax_agreement_percent": 100.0}


def test_measure_tf32_runs_each_precision_under_its_switches(monkeypatch):
    """The switches mocked: the 'TF32' forward of a tiny network is perturbed, fp32's is not."""
    import contextlib

    active, seen = [], []

    @contextlib.contextmanager
    def fake_arithmetic(precision, device):
        seen.append(precision)
        active.append(precision)
        try:
            yield
        finally:
            active.pop()

    class Net(torch.nn.Module):
        def forward(self, x):
            logits = torch.stack([x[:, 0], x[:, 1]], 1)
            if active and active[-1] != "fp32":  # "TF32": a small error, larger for tf32-all
                logits = logits + (1e-3 if active[-1] == "tf32" else 1e-2) * torch.ones_like(logits)
                logits[..., 0, 0] = torch.tensor([0.0, 9.0])  # one pixel's argmax moves
            return logits

    monkeypatch.setattr(selftest, "arithmetic", fake_arithmetic)
    monkeypatch.setattr(selftest, "build_filled", lambda config: Net())
    image = torch.arange(24.0).reshape(1, 2, 3, 4) / 24 + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    monkeypatch.setattr(selftest, "fixture_input", lambda: image)
    measured = selftest.measure_tf32(SMALL, torch.device("cpu"))
    assert seen == ["fp32", "tf32", "tf32-all"] and active == []
    assert measured["config"] == SMALL.config
    assert measured["tf32"]["argmax_agreement_percent"] == pytest.approx(100 * 11 / 12)
    moved = (9.0 - float(image[0, 1, 0, 0])) / float(image.abs().max())  # the pixel whose class changed
    assert measured["tf32-all"]["max_logit_diff"] == pytest.approx(moved)
    assert "tf32" in selftest.format_tf32(measured) and len(selftest.format_tf32(measured)) <= 80


def test_tf32_measurement_is_skipped_on_the_cpu_with_a_note(home, small, tmp_path):
    result = runner.invoke(app, ["selftest", "--device", "cpu", "--results", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "TF32 vs fp32: skipped: device 'cpu' has no TF32 arithmetic" in result.output
    recorded = json.loads((home / "selftest" / "cpu.json").read_text())
    assert recorded["tf32"] == [] and recorded["tf32_note"].startswith("skipped: ")


def test_tf32_measurement_runs_on_an_ampere_gpu(monkeypatch):
    from repro import numerics

    monkeypatch.setattr(numerics, "tf32_unavailable", lambda device: None)
    monkeypatch.setattr(selftest, "measure_tf32", lambda family, device: {
        "family": family.name, "config": family.config,
        "tf32": {"max_logit_diff": 1e-4, "argmax_agreement_percent": 99.99},
        "tf32-all": {"max_logit_diff": 2e-4, "argmax_agreement_percent": 99.98}})
    report = selftest.SelftestReport("cuda:0 (NVIDIA H200)", {}, True, [])
    lines = []
    selftest._run_tf32(report, torch.device("cuda", 0), True, lines.append)
    assert len(report.tf32) == len(selftest.families(quick=True)) and report.tf32_note == ""
    assert lines[0].startswith("TF32 vs fp32 (measured") and "99.990%" in lines[1]
    assert json.loads(report.to_json())["tf32"][0]["tf32-all"]["argmax_agreement_percent"] == 99.98
