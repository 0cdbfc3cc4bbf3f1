"""`repro eval --precision tf32|tf32-all|a,b` and `--dry-run --assume-device NAME` (CPU only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from synthetic_data import make_lip
from typer.testing import CliRunner

from repro import numerics
from repro.planning import budget
from repro.cli import app
from repro.errors import ReproError
from repro.manifest import DEFAULT_PATH
from repro.perf import achieved_flops, device_peak_flops
from repro.planning.plan import DeviceInfo

runner = CliRunner()
MODEL = "memorynetv2_ppm_resnet50os8_lip"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _one_line_error(result, exit_code=2) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


# -- refusals: one line, exit 2, before any work -------------------------------------------------


@pytest.mark.parametrize("precision", ["tf32", "tf32-all", "fp32,tf32"])
def test_tf32_on_the_cpu_is_refused_before_any_work(home, tmp_path, precision):
    out = tmp_path / "out"
    line = _one_line_error(runner.invoke(app, ["eval", MODEL, "--device", "cpu", "--precision", precision,
                                               "--results", str(out)]))
    assert "needs an Ampere or newer NVIDIA GPU" in line and "cpu" in line
    assert not out.exists()


def test_tf32_on_a_pre_ampere_gpu_is_refused_naming_it(home, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    line = _one_line_error(runner.invoke(app, ["eval", MODEL, "--device", "cuda", "--precision", "tf32"]))
    assert "Tesla V100-SXM2-32GB has compute capability 7.0" in line


def test_unknown_precision_lists_the_known_ones(home):
    line = _one_line_error(runner.invoke(app, ["eval", MODEL, "--precision", "fp32,tf16"]))
    assert "'tf16'" in line and "fp32, tf32, tf32-all, bf16, fp16" in line


def test_parse_precisions_keeps_order_once_each():
    assert numerics.parse_precisions("fp32, TF32,fp32") == ["fp32", "tf32"]
    with pytest.raises(ReproError):
        numerics.parse_precisions(" , ")


# -- a comma list runs each precision, one result file each --------------------------------------


@pytest.fixture
def small_setup(tmp_path, monkeypatch):
    from repro.models import build_segmentor, fill_model

    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = next(e for e in raw["models"] if e["id"] == MODEL)
    entry["protocols"]["single"]["resize"] = {"output_size": [64, 48], "keep_ratio": False}
    raw["models"] = [entry]
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("REPRO_MANIFEST", str(tmp_path / "zoo.yaml"))
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    make_lip(tmp_path / "data" / "LIP", n_val=3)
    torch.save({"model": fill_model(build_segmentor(MODEL)).state_dict()}, tmp_path / "filled.pth")
    return tmp_path


def test_a_precision_list_runs_each_into_its_own_result(small_setup, monkeypatch):
    monkeypatch.setattr(numerics, "tf32_unavailable", lambda device: None)  # this "CPU" has TF32
    before = numerics.switches().saved()
    out = small_setup / "out"
    result = runner.invoke(app, ["eval", MODEL, "--protocol", "single", "--checkpoint", str(small_setup / "filled.pth"),
                                 "--data-root", str(small_setup / "data"), "--limit", "2", "--device", "cpu",
                                 "--workers", "0", "--results", str(out), "--precision", "fp32,tf32,tf32-all"])
    assert result.exit_code == 0, result.output
    written = {json.loads(p.read_text())["precision"]: p.name for p in out.glob("*.json")}
    assert set(written) == {"fp32", "tf32", "tf32-all"}, result.output
    assert "tf32" in written["tf32"] and "tf32-all" in written["tf32-all"] and "tf32" not in written["fp32"]
    assert all(f"precision {p}:" in result.stderr for p in written)
    assert numerics.switches().saved() == before  # every run restored the switches
    assert "tf32 arithmetic, compared" in result.stdout


# -- budgeting: --dry-run --assume-device ---------------------------------------------------------


def test_assume_device_prints_fp32_and_tf32_budgets(home):
    result = runner.invoke(app, ["eval", "mcibi_deeplabv3_r50_ade20k", "--dry-run", "--assume-device", "A100"])
    assert result.exit_code == 0, result.output
    assert "plan: 2 runs on NVIDIA A100-SXM4-80GB" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("budget on"))
    assert "fp32 ~" in line and "tf32 ~" in line
    # Issue 25 #5: where each share comes from, as the README says it
    assert "19.5 TFLOP/s peak x 0.39 (measured on an H200)" in result.stdout
    assert "156 TFLOP/s peak x 0.20 (assumed)" in result.stdout
    assert line.startswith("budget on an assumed NVIDIA A100-SXM4-80GB: ")
    budget_lines = result.stdout[result.stdout.index("budget on"):].splitlines()
    assert len(budget_lines) == 4 and max(map(len, budget_lines)) <= 80
    assert budget_lines[3].startswith("  memory: up to ") and "/80 GiB (mcibi_deeplabv3_r50_ade20k ms+flip)" in budget_lines[3]


def test_the_cpu_budget_says_its_speed_was_measured_as_the_readme_does(home):
    """Issue 25 #5: "(assumed)" for a CPU speed the README and plan.py call measured, and
    "budget on cpu (2 threads) (assumed)" with doubled brackets."""
    from repro.planning.plan import CPU_GFLOPS_PER_THREAD

    result = runner.invoke(app, ["eval", MODEL, "--dry-run", "--assume-device", "cpu"])
    assert result.exit_code == 0, result.output
    budget_lines = result.stdout[result.stdout.index("budget on"):].splitlines()
    assert budget_lines[0].startswith("budget on an assumed cpu (") and ") (" not in budget_lines[0]
    threads = budget.assumed_device("cpu").threads
    assert budget_lines[1] == f"  fp32: the FLOP table at {threads} x {CPU_GFLOPS_PER_THREAD:g} GFLOP/s (measured for R-50 on 2 cores)"
    assert "(assumed)" not in budget_lines[1] and max(map(len, budget_lines)) <= 80
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"{CPU_GFLOPS_PER_THREAD:g} GFLOP/s per CPU thread, measured for R-50" in readme
    assert "35%" not in readme and "0.39 of the GPU's fp32 peak, measured on an H200" in readme


def test_assume_device_json_has_the_budget(home):
    result = runner.invoke(app, ["eval", "mcibi_deeplabv3_r50_ade20k", "--dry-run", "--assume-device", "v100",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"]["name"] == "Tesla V100-SXM2-32GB"
    assert data["budget"]["seconds"]["fp32"] > 0 and data["budget"]["seconds"]["tf32"] is None


def test_assume_device_errors(home):
    line = _one_line_error(runner.invoke(app, ["eval", MODEL, "--dry-run", "--assume-device", "k80"]))
    assert "a100, h100, h200, l40s, v100, cpu" in line
    line = _one_line_error(runner.invoke(app, ["eval", MODEL, "--assume-device", "a100"]))
    assert "--dry-run" in line


def test_assume_device_plans_tf32_without_refusing_on_this_cpu(home):
    result = runner.invoke(app, ["eval", MODEL, "--dry-run", "--assume-device", "h100", "--precision", "tf32"])
    assert result.exit_code == 0, result.output


def test_budget_arithmetic():
    a100, h100, v100 = (budget.assumed_device(n) for n in ("a100", "h100", "v100"))
    flops = 1e18
    fp32 = budget.device_seconds(flops, a100, "fp32")
    assert fp32 == pytest.approx(flops / (19.5e12 * 0.39))
    assert budget.device_seconds(flops, a100, "tf32") == pytest.approx(flops / (156e12 * 0.20))
    assert budget.device_seconds(flops, a100, "fp32", gpus=8) == pytest.approx(fp32 / 8)
    assert budget.device_seconds(flops, h100, "fp32") < fp32
    assert budget.device_seconds(flops, v100, "tf32") is None
    assert budget.device_seconds(flops, budget.assumed_device("cpu"), "tf32") is None
    assert budget.device_seconds(None, a100, "fp32") is None


def test_tf32_peaks_and_plan_speed_by_precision():
    assert device_peak_flops("NVIDIA A100-SXM4-80GB", "tf32") == pytest.approx(156e12)
    assert device_peak_flops("NVIDIA H200", "tf32-all") == pytest.approx(494.7e12)
    assert device_peak_flops("NVIDIA H200") == pytest.approx(66.9e12)  # fp32 unchanged by default
    assert device_peak_flops("Tesla V100-SXM2-32GB", "tf32") is None
    assert device_peak_flops("Tesla T4", "tf32") is None
    assert achieved_flops("NVIDIA H200") == pytest.approx(66.9e12 * 0.39)
    gpu = DeviceInfo("cuda", "NVIDIA A100-SXM4-80GB")
    assert gpu.flops_per_second("tf32") > 3 * gpu.flops_per_second("fp32")
    v100 = DeviceInfo("cuda", "Tesla V100-SXM2-32GB")
    assert v100.flops_per_second("tf32") == v100.flops_per_second("fp32")  # no TF32: fp32 speed


def test_plan_rows_use_the_precision_speed(home):
    from repro.engine.options import EngineOptions
    from repro.manifest import load_manifest
    from repro.planning.plan import build_plan

    manifest = load_manifest()
    runs = [type("Run", (), {"model_id": MODEL, "protocol": "single"})()]
    device = budget.assumed_device("a100")
    fp32 = build_plan(manifest, runs, [], "single", device, EngineOptions(precision="fp32")).rows[0].seconds
    tf32 = build_plan(manifest, runs, [], "single", device, EngineOptions(precision="tf32")).rows[0].seconds
    assert tf32 == pytest.approx(fp32 * (19.5 * 0.39) / (156 * 0.20))


def test_zoo_budget_table_covers_every_run(home, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("zoo_budget", Path(__file__).parents[1] / "tools" / "zoo_budget.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules["zoo_budget"] = tool  # its dataclass looks its module up
    spec.loader.exec_module(tool)
    text = tool.render_table(tool.zoo_rows(tmp_path / "no-data"))
    assert "| **all** | 85 |" in text and "A100" in text and "8x H100" in text
    assert text.count("\n") >= 8
