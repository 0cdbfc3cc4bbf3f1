"""Result files: one JSON document per (model, protocol), written atomically.

A result records what was measured and under which conditions, so that a number in a report can
always be traced back to a checkpoint digest, a dataset folder, a device and a code version.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repro.errors import ReproError
from repro.fileio import atomic_write_text  # noqa: F401  (re-exported for the report CLI)

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
    num_images_total: int  # images in the split
    limit: int | None = None
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
    seconds: float
    images_per_second: float


def result_filename(model_id: str, protocol: str) -> str:
    return f"{model_id}__{protocol}.json"


def write_result(result: EvalResult, out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir) / result_filename(result.model_id, result.protocol)
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
    rows = [json.loads(r.model_dump_json()) for r in load_results(results_dir)]
    return pd.json_normalize(rows, max_level=0) if rows else pd.DataFrame(columns=list(EvalResult.model_fields))
