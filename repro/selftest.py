"""`repro selftest`: does this machine compute what the reference computes?

Two kinds of check, each against a fixed bar:

* architecture: for one upstream config of every architecture family (ResNet-50/101 DeepLabV3,
  MCIBI++ ASPP / PPM / UPerNet heads, ResNeSt, HRNet, ViT-L, Swin-L), the network built with the
  deterministic fill of the parity fixtures (repro.models.fill) runs on the shipped fixture input
  (1x3x75x113). On the CPU its logits are compared with upstream's (the fixtures shipped in
  `repro/selftest_data/`); on a GPU the device's float32 logits (TF32 off) are also compared with
  the CPU's. Bar: max |ours - ref| <= 1e-4 * max |ref|.
* pipeline: a tiny filled network evaluates a few synthetic images under each protocol kind
  (whole single, flip, ms+flip, slide ms+flip) through the real engine (`run_job`: transform,
  inference, confusion matrix, result file), and the mIoU must equal the one of upstream's loop
  (`reference_predict`) on the CPU and, on a GPU, the CPU engine's. The result files then go
  through `repro.report`, so one command shows model, protocol, metric, result and report working.

The outcome (device, driver, torch, cuDNN, every difference, pass/fail, date) is written to
`<cache_home>/selftest/<device>.json`; `latest_selftest(device)` reads it back so that results
can cite it.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import repro
from repro.datasets.registry import DATASETS
from repro.engine.devices import device_label, environment
from repro.errors import ReproError
from repro.fileio import atomic_write_text
from repro.numerics import arithmetic, reduced_float32_settings
from repro.results.selftest_records import latest_selftest, selftest_record_path  # noqa: F401  (the API of this module too)
from repro.text import counted

TOLERANCE = 1e-4  # of max |reference logit|, as the parity fixtures (FILL.md)
MIOU_TOLERANCE = 1e-6  # mIoU points: the pipeline must give the same number, not a close one
DATA_DIR = Path(__file__).with_name("selftest_data")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Family:
    name: str  # what the output prints
    config: str  # upstream config; its fixture is DATA_DIR/<config>.npz
    quick: bool = False  # part of --quick


FAMILIES: tuple[Family, ...] = (
    Family("MCIBI R-50 DeepLabV3", "mcibi_deeplabv3_resnet50os8_cityscapes", quick=True),
    Family("MCIBI R-101 DeepLabV3", "mcibi_deeplabv3_resnet101os8_cityscapes"),
    Family("MCIBI ResNeSt-101", "mcibi_deeplabv3_resnest101os8_cityscapes"),
    Family("MCIBI HRNetV2-W48", "mcibi_deeplabv3_hrnetv2w48_cityscapes"),
    Family("MCIBI ViT-L", "mcibi_deeplabv3_vitlarge_ade20k"),
    Family("MCIBI++ R-50 (no context)", "mcibiplusplus_resnet50os8_cityscapes"),
    Family("MCIBI++ ASPP R-101", "mcibiplusplus_aspp_resnet101os8_cityscapes"),
    Family("MCIBI++ PPM R-50", "mcibiplusplus_ppm_resnet50os8_cityscapes", quick=True),
    Family("MCIBI++ UPerNet R-50", "mcibiplusplus_upernet_resnet50os8_lip"),
    Family("MCIBI++ ASPP HRNetV2-W48", "mcibiplusplus_aspp_hrnetv2w48_cityscapes"),
    Family("MCIBI++ UPerNet Swin-L", "mcibiplusplus_upernet_swinlarge_lip", quick=True),
)


@dataclass
class Check:
    """One line of the self-test: a family's logits or one protocol kind's mIoU."""

    kind: str  # "architecture" | "pipeline"
    name: str
    subject: str  # upstream config or protocol name
    values: dict[str, float]  # what was compared, e.g. {"cpu-fixture": 4.7e-06}
    bar: float
    passed: bool
    note: str = ""


@dataclass
class SelftestReport:
    device: str
    environment: dict[str, Any]
    quick: bool
    warnings: list[str]
    checks: list[Check] = field(default_factory=list)
    date: str = ""
    seconds: float = 0.0
    report_summary: str = ""
    # TF32 against fp32 per family, measured on a GPU (not pass/fail: how far TF32 moves the
    # logits and the argmax); empty with `tf32_note` saying why where it cannot run
    tf32: list[dict[str, Any]] = field(default_factory=list)
    tf32_note: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed, "repro_version": repro.__version__}, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Environment


def numerics_warnings() -> list[str]:
    """Global settings under which float32 is computed in reduced precision."""
    return reduced_float32_settings(cuda=torch.cuda.is_available())


def strict_fp32():
    """float32 as upstream's test script computes it (TF32 off everywhere), restored afterwards."""
    return arithmetic("fp32", "cpu")


def selftest_device(device: str | None) -> torch.device:
    """None/'auto': the GPU if there is one, else the CPU; errors as `repro eval --device`."""
    from repro.engine import resolve_device

    return resolve_device(device or "auto")


# ---------------------------------------------------------------------------------------------
# Architecture checks


def fixture_input() -> torch.Tensor:
    with np.load(DATA_DIR / "input.npz") as data:
        return torch.from_numpy(data["input"].copy())


def fixture_logits(config: str) -> torch.Tensor:
    path = DATA_DIR / f"{config}.npz"
    if not path.is_file():
        raise ReproError(f"selftest fixture {path} is missing; reinstall repro")
    with np.load(path) as data:
        return torch.from_numpy(data["logits"].copy())


def build_filled(config: str) -> nn.Module:
    """The network of `config` with the fixtures' deterministic weights, eval mode, CPU."""
    from repro.models import build_architecture, fill_model

    return fill_model(build_architecture(config)).eval()


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| (float64)."""
    ours, reference = ours.detach().cpu().double(), reference.detach().cpu().double()
    if ours.shape != reference.shape:
        return float("inf")
    value = float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-30))
    return value if math.isfinite(value) else float("inf")  # NaN would slip past max() and <=


def check_architecture(family: Family, device: torch.device) -> Check:
    model = build_filled(family.config)  # outside inference mode: the memory caches by tensor version
    x = fixture_input()
    with strict_fp32(), torch.no_grad():
        cpu_logits = model(x).float()
        values = {"cpu-fixture": relative_difference(cpu_logits, fixture_logits(family.config))}
        if device.type != "cpu":
            device_logits = model.to(device)(x.to(device)).float()
            values[f"{device.type}-cpu"] = relative_difference(device_logits, cpu_logits)
    worst = max(values.values())
    note = "" if worst <= TOLERANCE else f"{_worst_name(values)} {worst:.1e} > bar {TOLERANCE:.0e}"
    return Check("architecture", family.name, family.config, values, TOLERANCE, worst <= TOLERANCE, note)


def _worst_name(values: dict[str, float]) -> str:
    return max(values, key=lambda name: values[name])


# ---------------------------------------------------------------------------------------------
# TF32 against fp32 (issue 17): a measurement per family, on Ampere or newer GPUs only

TF32_PRECISIONS = ("tf32", "tf32-all")


def logit_agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Max |other - reference| relative to max |reference|, and the share of pixels (percent)
    whose argmax over classes agrees."""
    reference, other = reference.detach().cpu().double(), other.detach().cpu().double()
    same = (reference.argmax(1) == other.argmax(1)).double().mean().item() * 100.0
    return {"max_logit_diff": relative_difference(other, reference), "argmax_agreement_percent": same}


def measure_tf32(family: Family, device: torch.device) -> dict[str, Any]:
    """The family's fixture logits on `device` in fp32 and in each TF32 precision, compared."""
    model = build_filled(family.config).to(device)
    x = fixture_input().to(device)
    logits = {}
    for precision in ("fp32", *TF32_PRECISIONS):
        with arithmetic(precision, device), torch.no_grad():
            logits[precision] = model(x).float()
    return {"family": family.name, "config": family.config,
            **{p: logit_agreement(logits["fp32"], logits[p]) for p in TF32_PRECISIONS}}


def format_tf32(measured: dict[str, Any]) -> str:
    shown = "  ".join(f"{p} {measured[p]['max_logit_diff']:.1e} {measured[p]['argmax_agreement_percent']:.3f}%"
                      for p in TF32_PRECISIONS)
    return f"  {measured['family']:<27} {shown}"


def _run_tf32(report: SelftestReport, target: torch.device, quick: bool, say: Say) -> None:
    from repro.numerics import tf32_unavailable

    reason = tf32_unavailable(target)
    if reason:
        report.tf32_note = f"skipped: {reason}"
        say(f"TF32 vs fp32: {report.tf32_note}")
        return
    say("TF32 vs fp32 (measured, not a check: max|logit diff| of max|logit|, argmax agreement):")
    for family in families(quick):
        report.tf32.append(measure_tf32(family, target))
        say(format_tf32(report.tf32[-1]))


# ---------------------------------------------------------------------------------------------
# Pipeline check: synthetic images through the real engine, every protocol kind

# The dataset with left/right channel pairs (LIP: 20 classes), so the flip swap is exercised.
PIPELINE_DATASET = next(name for name, spec in DATASETS.items() if spec.flip_pairs)
PIPELINE_SIZES = ((41, 57), (64, 48), (37, 75), (50, 50))  # odd and portrait sizes on purpose
_NORMALIZE = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
_FLIP_PAIRS = [list(pair) for pair in DATASETS[PIPELINE_DATASET].flip_pairs]


def _protocol(mode: str, scales: Sequence[float], flip: bool, probs: bool, keep_ratio: bool) -> dict:
    return {
        "upstream_block": "selftest", "resize": {"output_size": [48, 64], "keep_ratio": keep_ratio},
        "normalize": _NORMALIZE, "mode": mode,
        "crop_size": [24, 32] if mode == "slide" else None, "stride": [16, 20] if mode == "slide" else None,
        "scales": list(scales), "flip": flip, "flip_pairs": _FLIP_PAIRS if flip else [], "probs_before_resize": probs,
    }


PIPELINE_PROTOCOLS: dict[str, dict] = {
    "single": _protocol("whole", [1.0], False, False, True),
    "flip": _protocol("whole", [1.0], True, False, False),
    "ms+flip": _protocol("whole", [0.5, 0.75, 1.0, 1.25], True, True, True),
    "slide-ms+flip": _protocol("slide", [0.75, 1.0, 1.5], True, True, False),
}


class SyntheticSplit:
    """A few seeded random images with labels (ignore pixels included), like an EvalDataset."""

    def __init__(self, num_classes: int, sizes: Sequence[tuple[int, int]] = PIPELINE_SIZES, seed: int = 0):
        from repro.datasets.base import Sample

        rng = np.random.default_rng(seed)
        self.samples = []
        for index, (height, width) in enumerate(sizes):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            label = rng.integers(-1, num_classes, (height, width)).astype(np.int64)
            self.samples.append(Sample(f"synthetic_{index}", image, label, Path(f"synthetic_{index}.png")))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [sample.id for sample in self.samples]

    def __getitem__(self, index: int):
        return self.samples[index]


def tiny_network(num_classes: int) -> nn.Module:
    """conv-BN-ReLU x2 + 1x1 classifier, output stride 2, with the deterministic fill."""
    from repro.models import fill_model

    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, num_classes, 1),
    )
    return fill_model(net).eval()


def _pipeline_model_id() -> str:
    """A real LIP row of the manifest, so that the report can place the synthetic results."""
    from repro.manifest import load_manifest

    return next(e.id for e in load_manifest().entries if e.dataset == PIPELINE_DATASET)


def _engine_miou(name: str, dataset: SyntheticSplit, device: torch.device, results: Path, model_id: str):
    from repro.engine import EngineOptions, EvalJob, run_job

    job = EvalJob(
        model_id=model_id, protocol_name=name, protocol=PIPELINE_PROTOCOLS[name], dataset=dataset,
        dataset_name=PIPELINE_DATASET, split="val", data_root="<synthetic>",
        class_names=DATASETS[PIPELINE_DATASET].class_names,
        build_model=lambda: tiny_network(DATASETS[PIPELINE_DATASET].num_classes),
        checkpoint_sha256="selftest",
    )
    # limit = all but one image: the result is honestly 'partial', never compared with a document
    options = EngineOptions(device=str(device), results=results, workers=0, resume=False, limit=len(dataset) - 1)
    return run_job(job, options)


def reference_miou(name: str, dataset: SyntheticSplit, count: int) -> float:
    """mIoU (percent) of upstream's test loop transcription on the CPU, first `count` images."""
    from repro.inference.transforms import test_transform
    from repro.inference.reference import reference_predict
    from repro.metrics import ConfusionMatrix

    num_classes = DATASETS[PIPELINE_DATASET].num_classes
    model, protocol = tiny_network(num_classes), PIPELINE_PROTOCOLS[name]
    matrix = ConfusionMatrix(num_classes)
    with strict_fp32():
        for index in range(count):
            sample = dataset[index]
            scores = reference_predict(model, test_transform(sample.image, protocol), protocol, num_classes,
                                       output_size=sample.label.shape)
            matrix.update(scores.argmax(0), torch.from_numpy(sample.label))
    return matrix.scores().miou * 100.0


def check_pipeline(name: str, device: torch.device, results: Path, model_id: str) -> Check:
    dataset = SyntheticSplit(20)
    cpu = _engine_miou(name, dataset, torch.device("cpu"), results / "cpu", model_id)
    values = {"cpu": cpu.miou, "reference": reference_miou(name, dataset, cpu.num_images)}
    if device.type != "cpu":
        values[device.type] = _engine_miou(name, dataset, device, results / device.type, model_id).miou
    spread = max(values.values()) - min(values.values())
    passed = all(math.isfinite(v) for v in values.values()) and spread <= MIOU_TOLERANCE
    note = "" if passed else "mIoU differs: " + ", ".join(f"{k} {v:.6f}" for k, v in values.items())
    return Check("pipeline", f"pipeline {name}", name, values, MIOU_TOLERANCE, passed, note)


def report_summary(results_dir: Path, model_id: str) -> str:
    """The pipeline's result files through repro.report: its summary line (and report.md beside them)."""
    from repro.manifest import load_manifest
    from repro.report.table import build_report, status_counts
    from repro.report.render import render_markdown

    table = build_report(load_manifest(), results_dir, ids=[model_id], measured_only=True)
    atomic_write_text(results_dir / "report.md", render_markdown(table))
    counts = ", ".join(f"{n} {status}" for status, n in status_counts(table).items() if n)
    return f"{counted(len(table), 'row')} ({counts or 'none'})"


# ---------------------------------------------------------------------------------------------
# Running, printing, recording


def families(quick: bool) -> list[Family]:
    return [f for f in FAMILIES if f.quick or not quick]


def format_check(check: Check) -> str:
    """One line, under 80 columns: status, name, the differences (and why it failed)."""
    status = "ok  " if check.passed else "FAIL"
    if check.kind == "architecture":
        shown = "  ".join(f"{k} {v:.1e}" for k, v in check.values.items())
    else:
        shown = "mIoU " + "  ".join(f"{k} {v:.4f}" for k, v in check.values.items())
    line = f"  {status}  {check.name:<27} {shown}"
    return line if check.passed else f"{line}\n        {check.note}"


def run_selftest(
    device: str | None = None, quick: bool = False, *, say: Say = print, results: Path | None = None,
) -> SelftestReport:
    """Run every check, printing one line per check through `say`; returns the report."""
    started = time.perf_counter()
    target = selftest_device(device)
    report = SelftestReport(device_label(target), environment(target), quick, numerics_warnings())
    for warning in report.warnings:
        say(f"warning: {warning}; repro evaluates with it off, but your own code may not")
    where = f"{target.type} vs cpu and cpu vs fixtures" if target.type != "cpu" else "cpu vs shipped fixtures"
    say(f"architectures ({where}; bar {TOLERANCE:.0e} of max|logit|):")
    for family in families(quick):
        report.checks.append(check_architecture(family, target))
        say(format_check(report.checks[-1]))
    _run_tf32(report, target, quick, say)
    say(f"pipeline (synthetic images, engine vs reference loop; bar {MIOU_TOLERANCE:.0e} mIoU):")
    _run_pipeline(report, target, results, say)
    report.date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _run_pipeline(report: SelftestReport, target: torch.device, results: Path | None, say: Say) -> None:
    folder = Path(results) if results is not None else Path(tempfile.mkdtemp(prefix="repro-selftest-"))
    try:
        model_id = _pipeline_model_id()
        for name in PIPELINE_PROTOCOLS:
            report.checks.append(check_pipeline(name, target, folder, model_id))
            say(format_check(report.checks[-1]))
        report.report_summary = report_summary(folder / "cpu", model_id)
        say(f"  report of the pipeline's result files: {report.report_summary}")
    finally:
        if results is None:
            shutil.rmtree(folder, ignore_errors=True)


def record(report: SelftestReport) -> Path:
    path = selftest_record_path(report.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report.to_json())
    return path


