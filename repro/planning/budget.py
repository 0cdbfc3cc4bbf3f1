"""Budgeting a GPU you do not have yet: `repro eval ... --dry-run --assume-device NAME`.

The plan's FLOPs (repro.planning.plan: the per-config FLOP table scaled by each protocol's pixels, times
the images) over the device's achieved speed (repro.perf: peak x achieved share), in fp32 and in
TF32; each run's estimated peak memory (repro.inference.footprint) against the device's memory.
These are ESTIMATES: the fp32 share was measured on an H200 (issue 12), the TF32 share is
assumed until a GPU run measures it (benchmarks/gpu_check.sh), the CPU speed was measured for
R-50 on a 2-core machine (repro.planning.plan). Light at import (no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from repro.errors import ReproError
from repro.perf import FP32_ACHIEVED_SHARE, TF32_ACHIEVED_SHARE, achieved_share, device_peak_flops
from repro.planning.plan import (
    CPU_GFLOPS_PER_THREAD, CPU_SPEED_SOURCE, DeviceInfo, Plan, PlanRow, format_duration, format_memory,
)
from repro.text import counted

# --assume-device NAME -> the name torch.cuda.get_device_name() gives such a GPU (None: a CPU)
ASSUMED_DEVICES: dict[str, str | None] = {
    "a100": "NVIDIA A100-SXM4-80GB",
    "h100": "NVIDIA H100 80GB HBM3",
    "h200": "NVIDIA H200",
    "l40s": "NVIDIA L40S",
    "v100": "Tesla V100-SXM2-32GB",
    "cpu": None,
}
BUDGET_PRECISIONS = ("fp32", "tf32")  # tf32-all: the same tensor-core estimate as tf32


def assumed_device(name: str) -> DeviceInfo:
    """The DeviceInfo of an --assume-device NAME (any case); one line listing the known names."""
    key = (name or "").strip().lower()
    if key not in ASSUMED_DEVICES:
        raise ReproError(f"unknown --assume-device '{name}'; use one of {', '.join(ASSUMED_DEVICES)}", exit_code=2)
    gpu = ASSUMED_DEVICES[key]
    if gpu is None:  # this machine's CPU (and memory)
        return DeviceInfo("cpu", "cpu", os.cpu_count() or 1)
    return DeviceInfo("cuda", gpu)


@dataclass(frozen=True)
class Budget:
    """The estimated time of a plan's runs on one device, per precision (None: cannot run there)."""

    device: str
    runs: int
    flops: float | None  # summed over the runs and their images (None: a row's FLOPs are unknown)
    seconds: dict[str, float | None]
    peak_memory: int | None = None  # the largest estimated peak of a run (bytes)
    device_memory: int | None = None  # the device's memory (bytes; None: unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "runs": self.runs, "flops": self.flops, "seconds": dict(self.seconds),
                "fp32_share": FP32_ACHIEVED_SHARE, "tf32_share": TF32_ACHIEVED_SHARE,
                "peak_memory": self.peak_memory, "device_memory": self.device_memory}


def plan_flops(plan: Plan) -> float | None:
    """FLOPs of every run of the plan that has no result on disk (None when one is unknown)."""
    todo = [row for row in plan.rows if row.protocol is not None and not row.result_on_disk]
    if any(row.flops_per_image is None or row.images is None for row in todo):
        return None
    return float(sum(row.flops_per_image * row.images for row in todo))


def device_seconds(flops: float | None, device: DeviceInfo, precision: str, gpus: int = 1) -> float | None:
    """Time of `flops` on `gpus` such devices (images shared evenly, as torchrun does); None where
    the precision cannot run (TF32 on a CPU or a pre-Ampere GPU)."""
    if flops is None:
        return None
    if precision != "fp32" and (device.kind != "cuda" or device_peak_flops(device.name, precision) is None):
        return None
    return flops / (device.flops_per_second(precision) * max(1, gpus))


def plan_budget(plan: Plan, device: DeviceInfo | None = None) -> Budget:
    device = device or plan.device
    flops = plan_flops(plan)
    runs = sum(1 for row in plan.rows if row.protocol is not None and not row.result_on_disk)
    top = largest_peak(plan)
    return Budget(device.label, runs, flops, {p: device_seconds(flops, device, p) for p in BUDGET_PRECISIONS},
                  top.peak_memory if top else None, device.memory)


def largest_peak(plan: Plan) -> PlanRow | None:
    """The run of the plan with the largest estimated peak memory (None: none is known)."""
    known = [row for row in plan.rows if row.protocol is not None and row.peak_memory is not None]
    return max(known, key=lambda row: row.peak_memory) if known else None


def _speed_text(device: DeviceInfo, precision: str) -> str:
    if device.kind == "cpu":
        if precision != "fp32":
            return "n/a"
        return f"{device.threads} x {CPU_GFLOPS_PER_THREAD:g} GFLOP/s ({CPU_SPEED_SOURCE})"
    peak = device_peak_flops(device.name, precision)
    if peak is None:
        return "n/a (TF32 needs an Ampere or newer GPU)" if precision != "fp32" else "peak unknown"
    share, source = achieved_share(precision)
    return f"{peak / 1e12:g} TFLOP/s peak x {share:.2f} ({source})"


def budget_lines(plan: Plan) -> list[str]:
    """What the plan's runs would take on the plan's (assumed) device, in fp32 and in TF32."""
    device, budget = plan.device, plan_budget(plan)
    times = ", ".join(f"{p} {format_duration(s) if s is not None else 'n/a'}" for p, s in budget.seconds.items())
    lines = [f"budget on an assumed {device.label}: {times}, {counted(budget.runs, 'run')}"]
    for name in BUDGET_PRECISIONS:
        speed = _speed_text(device, name)
        lines.append(f"  {name}: " + (speed if speed.startswith("n/a") else f"the FLOP table at {speed}"))
    top = largest_peak(plan)
    if top is not None:
        lines.append(f"  memory: up to {format_memory(top.peak_memory, device.memory)} "
                     f"({top.model_id} {top.protocol}), estimated")
    return lines
