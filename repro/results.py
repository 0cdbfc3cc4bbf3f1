"""Result files: one JSON document per (model, protocol), written atomically.

A result records what was measured and under which conditions, so that a number in a report can
always be traced back to a checkpoint digest, a dataset folder, a device and a code version.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repro.errors import ReproError
from repro.fileio import atomic_write_text  # noqa: F401  (re-exported for the report CLI)
from repro.paths import cache_home

if TYPE_CHECKING:  # pandas loads in results_frame only: `repro status` reads results without it
    import pandas as pd

SCHEMA_VERSION = 1


class EvalResult(BaseModel):
    """What one evaluation of one model under one protocol measured."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    model_id: str
    protocol: str  # single | flip | ms+flip
    settings: dict  # the full protocol settings used (manifest Protocol, dumped)
    dataset: str
    split: str
    data_root: str
    status: Literal["complete", "partial", "server"]
    # Metrics in percent; None for server-scored runs (Cityscapes test split).
    miou: float | None = None
    miou_rounded: float | None = None  # 2 decimals, as the documents print it
    aacc: float | None = None
    macc: float | None = None
    per_class_iou: dict[str, float | None] = Field(default_factory=dict)  # None where NaN
    num_images: int  # images evaluated
    num_images_total: int  # images in the split folder evaluated
    num_images_official: int | None = None  # images in the official split (None: unknown)
    limit: int | None = None
    # Why a result is partial (never compared): "limit" (--limit N) or "subset" (the folder holds
    # fewer images than the official split, accepted with --allow-subset). None when complete.
    partial_reason: Literal["limit", "subset"] | None = None
    variant: str = "upstream-head"  # which forward of the architecture was measured
    submission: str | None = None  # server runs: the zip to upload
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str
    torch_version: str
    cuda_version: str | None = None
    cudnn_version: int | None = None
    world_size: int = 1
    # How the engine ran (max crops per batch, where the final resize ran): these change the
    # order of float operations, not the protocol, so they are recorded but not compared.
    engine: dict[str, object] = Field(default_factory=dict)
    repro_version: str
    git_commit: str | None = None
    started: datetime
    finished: datetime
    seconds: float  # evaluation time over all sessions (model building and loading excluded)
    images_per_second: float
    # Performance (all optional: files written before these existed still load).
    seconds_per_image: float | None = None
    # Peak memory: "cuda-allocated" = torch.cuda.max_memory_allocated on the device (rank 0);
    # "process-rss" = peak resident memory of the whole process so far (CPU runs), not the model's.
    peak_memory_bytes: int | None = None
    peak_memory_kind: Literal["cuda-allocated", "process-rss"] | None = None
    # Convolution / matmul / attention FLOPs of one image's forward passes (torch's FlopCounterMode
    # on the first image evaluated; images of another size cost proportionally more or less).
    flops_per_image: float | None = None
    device_peak_flops: float | None = None  # the device's dense fp32 peak (FLOP/s) when known
    peak_flops_fraction: float | None = None  # achieved FLOP/s per device / device_peak_flops
    # the last `repro selftest` recorded on this device when the run ended (path, date, passed, ...)
    selftest: dict | None = None


def result_filename(model_id: str, protocol: str, variant: str | None = None, default_variant: str | None = None) -> str:
    """`<id>__<protocol>.json` for the row's default forward, `<id>__<protocol>__<variant>.json`
    for another one, so that measuring both forwards of a checkpoint keeps both results."""
    if variant is None or variant == default_variant:
        return f"{model_id}__{protocol}.json"
    return f"{model_id}__{protocol}__{variant}.json"


def write_result(result: EvalResult, out_dir: str | os.PathLike, default_variant: str | None = None) -> Path:
    """Writes the result under `result_filename`; `default_variant` None: the plain name."""
    variant = result.variant if default_variant is not None else None
    path = Path(out_dir) / result_filename(result.model_id, result.protocol, variant, default_variant)
    atomic_write_text(path, result.model_dump_json(indent=2) + "\n")
    return path


def read_result(path: str | os.PathLike) -> EvalResult:
    path = Path(path)
    try:
        return EvalResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ReproError(f"{path}: not a repro result file ({first})") from None


def load_results(results_dir: str | os.PathLike) -> list[EvalResult]:
    """Every result file in a folder (files that are not results raise ReproError)."""
    folder = Path(results_dir)
    if not folder.is_dir():
        return []
    return [read_result(p) for p in sorted(folder.glob("*__*.json"))]


def results_frame(results_dir: str | os.PathLike) -> pd.DataFrame:
    """All results of a folder as one table, one row per (model, protocol)."""
    import pandas as pd

    rows = [json.loads(r.model_dump_json()) for r in load_results(results_dir)]
    return pd.json_normalize(rows, max_level=0) if rows else pd.DataFrame(columns=list(EvalResult.model_fields))


# ---------------------------------------------------------------------------------------------
# `repro selftest` records (written by repro/selftest.py; read here so that results can cite them)


def selftest_record_path(device_label: str) -> Path:
    """<cache_home>/selftest/<device>.json, e.g. .../selftest/cuda-0.json for 'cuda:0 (NVIDIA H200)'."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_label.split(" (")[0]).strip("-") or "device"
    return cache_home() / "selftest" / f"{slug}.json"


def latest_selftest(device: object) -> dict | None:
    """The last recorded `repro selftest` on `device` ('cpu', 'cuda:0', a result's device label),
    as {path, date, passed, device, torch, driver, cudnn, quick}; None if there is none."""
    label = str(device)
    if label.strip().lower() == "cuda":
        label = "cuda:0"
    path = selftest_record_path(label)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    env = data.get("environment", {})
    return {"path": str(path), "date": data.get("date"), "passed": data.get("passed"), "device": data.get("device"),
            "torch": env.get("torch"), "driver": env.get("driver"), "cudnn": env.get("cudnn"), "quick": data.get("quick")}
