"""The result record: the file a run writes, the conditions it runs under (what
`repro.results.freshness.result_on_disk` compares a result on disk with), and the EvalResult built
from the merged sinks, the timing and the environment.

Every result records images/s, seconds per image, the peak memory, the FLOPs of one image's
forward passes and the achieved share of the GPU's peak for the run's arithmetic (fp32, or
TF32 tensor cores for tf32 / tf32-all; `repro.perf.peak_name`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import repro
from repro.engine.devices import Ranks, environment
from repro.engine.job import EngineOptions, EvalJob
from repro.engine.progress import State
from repro.inference.predictor import Predictor
from repro.perf import device_peak_flops, peak_fraction
from repro.results.files import EvalResult, run_result_name
from repro.results.freshness import RunConditions
from repro.results.selftest_records import latest_selftest


@dataclass(frozen=True)
class Extent:
    """How much of the split a run covers."""

    total: int  # images in the folder
    count: int  # images to evaluate (after --limit)
    subset: bool  # the folder holds fewer than the official split

    @property
    def partial_reason(self) -> str | None:
        return "subset" if self.subset else ("limit" if self.count < self.total else None)


def result_path(job: EvalJob, options: EngineOptions, output: Path, extent: Extent) -> Path:
    """Where this run's result goes: a partial run or another precision never lands on a full result."""
    return output / run_result_name(job.model_id, job.protocol_name, variant=job.variant,
                                    default_variant=job.default_variant, precision=options.precision,
                                    limit=options.limit, subset=extent.subset, folder_images=extent.total)


def conditions(job: EvalJob, options: EngineOptions, extent: Extent, fingerprint: str | None) -> RunConditions:
    return RunConditions(
        model_id=job.model_id, protocol=job.protocol_name, settings=job.settings(), variant=job.variant,
        precision=options.precision, dataset=job.dataset_name, split=job.split, data_root=job.data_root,
        limit=options.limit, folder_images=extent.total, checkpoint=job.checkpoint,
        checkpoint_sha256=job.checkpoint_sha256, dataset_fingerprint=fingerprint,
    )


def git_commit() -> str | None:
    """HEAD of the repository the package runs from, if it runs from a git checkout."""
    package_dir = Path(repro.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(package_dir), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def performance(state: State, device: torch.device, ranks: Ranks, evaluated: int, seconds: float,
                precision: str = "fp32") -> dict:
    """images/s, s/image, peak memory, FLOPs per image and the share of the device's peak for the
    run's arithmetic (fp32 CUDA cores; TF32 tensor cores for tf32 / tf32-all)."""
    cuda = device.type == "cuda"
    per_second = (evaluated / seconds) if seconds > 0 and evaluated > 0 else 0.0
    peak = device_peak_flops(torch.cuda.get_device_name(device), precision) if cuda else None
    return {
        "images_per_second": per_second,
        "seconds_per_image": (seconds / evaluated) if seconds > 0 and evaluated > 0 else None,
        "peak_memory_bytes": state.peak_memory,
        "peak_memory_kind": None if state.peak_memory is None else ("cuda-allocated" if cuda else "process-rss"),
        "flops_per_image": state.flops_per_image,
        "device_peak_flops": peak,
        "peak_flops_fraction": peak_fraction(state.flops_per_image, per_second, ranks.world_size, peak),
    }


def run_environment(options: EngineOptions, device: torch.device, ranks: Ranks,
                    batching: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result's fields on how and where it was computed (`repro.engine.devices.environment`);
    `batching`: how the inputs shared forwards (`Predictor.batching`, over sessions and ranks),
    out-of-memory halvings included."""
    machine = environment(device)
    return {
        "precision": options.precision, "device": machine["device"], "torch_version": machine["torch"],
        "cuda_version": machine["cuda"], "cudnn_version": machine["cudnn"], "world_size": ranks.world_size,
        "engine": {"max_batch": options.max_batch, "resize_on_cpu": options.resize_on_cpu,
                   "channels_last": Predictor.default_channels_last(device, options.resize_on_cpu),
                   **(batching or {})},
        "repro_version": repro.__version__, "git_commit": git_commit(),
        "selftest": latest_selftest(machine["device"]),
    }


def make_result(job: EvalJob, options: EngineOptions, extent: Extent, timing: dict[str, Any],
                sink_fields: dict[str, Any], dataset_fingerprint: str | None, started: str,
                env: dict[str, Any]) -> EvalResult:
    """`timing`: num_images, seconds and the `performance` fields; `sink_fields`: what the sinks add."""
    partial_reason = extent.partial_reason
    status = "server" if job.server else ("partial" if partial_reason else "complete")
    return EvalResult(
        model_id=job.model_id, protocol=job.protocol_name, settings=job.settings(), dataset=job.dataset_name,
        split=job.split, data_root=job.data_root, status=status, num_images_total=extent.total,
        num_images_official=job.official_count if job.count_unit == "images" else None, limit=options.limit,
        partial_reason=partial_reason, variant=job.variant, checkpoint=job.checkpoint,
        checkpoint_sha256=job.checkpoint_sha256, started=datetime.fromisoformat(started),
        finished=datetime.now(timezone.utc), dataset_fingerprint=dataset_fingerprint,
        **env, **timing, **sink_fields,
    )
