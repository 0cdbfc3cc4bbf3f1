"""Result files: one JSON document per (model, protocol), written atomically.

A result records what was measured and under which conditions, so that a number in a report can
always be traced back to a checkpoint digest, a dataset folder, a device and a code version.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from repro.errors import ReproError
from repro.fileio import atomic_write_text, file_sha256, write_beside
from repro.text import plural

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
    # repro.numerics.PRECISIONS; a name this version does not know (a newer repro's) still loads,
    # and the report shows it as not comparable instead of dropping the file
    precision: str = Field("fp32", pattern=r"^[a-z0-9][a-z0-9._-]{0,31}$")
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
    # the device's dense peak (FLOP/s) for the run's arithmetic, when known: fp32 CUDA cores, or TF32
    # tensor cores for tf32 / tf32-all (repro.perf.device_peak_flops, .peak_name)
    device_peak_flops: float | None = None
    peak_flops_fraction: float | None = None  # achieved FLOP/s per device / device_peak_flops
    # the last `repro selftest` recorded on this device when the run ended (path, date, passed, ...)
    selftest: dict | None = None
    # Per-image evidence: the sidecar `<result stem>.evidence.npz` (repro.results.evidence) and its sha256.
    evidence: str | None = None
    evidence_sha256: str | None = None
    # A digest over the sorted (relative path, size) of the split's files: which copy was measured.
    dataset_fingerprint: str | None = None
    predictions_dir: str | None = None  # --save-predictions: the folder of per-image label PNGs


# ---------------------------------------------------------------------------------------------
# File names: one file per evaluation conditions, so that no run lands on another's result


def result_filename(
    model_id: str, protocol: str, variant: str | None = None, default_variant: str | None = None,
    precision: str = "fp32", partial: str | None = None,
) -> str:
    """`<id>__<protocol>.json` for a complete fp32 result of the row's default forward (the name
    results always had); another forward, a non-fp32 precision and a partial run (`partial`: a
    tag from `partial_tag`, e.g. "limit50" or "subset") each add a part, in that order:
    `<id>__<protocol>__training-era__bf16__limit50.json`. A smoke run never lands on a full result."""
    parts = [model_id, protocol]
    if variant is not None and variant != default_variant:
        parts.append(variant)
    if precision and precision != "fp32":
        parts.append(precision)
    if partial:
        parts.append(partial)
    return "__".join(parts) + ".json"


def partial_tag(limit: int | None, subset: bool, total: int | None = None) -> str | None:
    """The file-name part of a partial run: "subset" (a folder smaller than the official split),
    "limit<N>" (--limit N below the `total` images of the folder), both joined by "-"; None: complete."""
    parts = ["subset"] if subset else []
    if limit is not None and (total is None or limit < total):
        parts.append(f"limit{limit}")
    return "-".join(parts) or None


def run_result_name(model_id: str, protocol: str, *, variant: str | None, default_variant: str | None,
                    precision: str, limit: int | None, subset: bool, folder_images: int | None) -> str:
    """The file name of a run's result: the one rule the engine and the plan both follow."""
    return result_filename(model_id, protocol, variant, default_variant, precision,
                           partial_tag(limit, subset, folder_images))


def result_partial_tag(result: EvalResult) -> str | None:
    """`partial_tag` of a result as recorded (old files without `partial_reason`: from `limit`)."""
    return partial_tag(result.limit, result.partial_reason == "subset", result.num_images_total)


def filename_of(result: EvalResult, default_variant: str | None = None) -> str:
    """The file name a result is written under (`default_variant` None: the plain variant part)."""
    variant = result.variant if default_variant is not None else None
    return result_filename(result.model_id, result.protocol, variant, default_variant, result.precision,
                           result_partial_tag(result))


def evidence_path(result_path: str | os.PathLike) -> Path:
    """The evidence sidecar of a result file: `<stem>.evidence.npz` beside it."""
    path = Path(result_path)
    return path.with_name(f"{path.stem}.evidence.npz")


def write_result(result: EvalResult, out_dir: str | os.PathLike, default_variant: str | None = None) -> Path:
    """Writes the result under `filename_of(result, default_variant)`."""
    path = Path(out_dir) / filename_of(result, default_variant)
    atomic_write_text(path, result.model_dump_json(indent=2) + "\n")
    return path


def archive_result(path: str | os.PathLike) -> Path:
    """Keep a result that is about to be replaced: rename it (and its evidence sidecar, if any)
    beside itself to `<name>.replaced-<UTC time>`, a name no results listing reads. Never deletes.
    Returns the new path of the result file."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.replaced-{stamp}")
    os.replace(path, target)
    sidecar = evidence_path(path)
    if sidecar.is_file():
        os.replace(sidecar, sidecar.with_name(f"{sidecar.name}.replaced-{stamp}"))
    return target


def retire_result(path: str | os.PathLike) -> None:
    """Make room for a new result at `path`: a complete result is archived (`archive_result`);
    anything else there (a partial or damaged result) is removed, with its sidecar."""
    path = Path(path)
    if not path.exists():
        return
    try:
        complete = read_result(path).status == "complete"
    except ReproError:
        complete = False
    if complete:
        archive_result(path)
    else:
        path.unlink()
        evidence_path(path).unlink(missing_ok=True)


def publish_result(result: EvalResult, path: str | os.PathLike, evidence: bytes | None = None) -> Path:
    """Write a result and its evidence sidecar (`evidence`: the sidecar's bytes) so that a result
    never stands beside a sidecar that is not its own:
    1. the sidecar and the result are written to temporary files beside their names (a failure
       here, a full disk say, leaves every file as it was);
    2. what is at `path` is retired (a complete result archived with its sidecar, else removed);
    3. the sidecar takes its name, then the result.
    A crash inside 2-3 leaves no result, maybe a sidecar without one (`orphan_sidecars`)."""
    path = Path(path)
    sidecar = evidence_path(path)
    staged: list[Path] = []
    try:
        if evidence is not None:
            result.evidence, result.evidence_sha256 = sidecar.name, hashlib.sha256(evidence).hexdigest()
            staged.append(write_beside(sidecar, evidence))
        staged.append(write_beside(path, (result.model_dump_json(indent=2) + "\n").encode("utf-8")))
        retire_result(path)
        for temporary, target in zip(staged, [sidecar, path] if evidence is not None else [path]):
            os.replace(temporary, target)
    finally:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
    return path


def read_result(path: str | os.PathLike) -> EvalResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as err:  # ValueError: not UTF-8
        raise ReproError(f"{path}: not a repro result file (cannot be read: {err})") from None
    if not text.strip():
        raise ReproError(f"{path}: not a repro result file (the file is empty)")
    try:
        return EvalResult.model_validate_json(text)
    except ValidationError as err:
        raise ReproError(f"{path}: not a repro result file ({_why_not_a_result(err)})") from None


def _why_not_a_result(err: ValidationError) -> str:
    """The first problem in words: broken JSON (a truncated write) or the field that does not fit."""
    first = err.errors()[0]
    if first["type"] == "json_invalid":
        detail = first["msg"].removeprefix("Invalid JSON: ")
        return f"not valid JSON, truncated or damaged: {detail}"
    where = ".".join(str(part) for part in first["loc"]) or "the whole file"
    more = err.error_count() - 1
    return f"{where}: {first['msg']}" + (f"; {more} more {plural(more, 'problem')}" if more else "")


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


def read_results_tolerant(folder: Path, *, verify_evidence: bool = False) -> tuple[list[tuple[Path, EvalResult]], list[str]]:
    """(path, result) for every usable result file of a folder, and one note per file that is not
    usable: damaged, or out of step with its evidence sidecar (missing; with `verify_evidence`,
    another sidecar's bytes), or a sidecar without its result. Such a file is named, never used.

    Unlike `load_results`, this keeps going past a broken file: status and the report name them.
    """
    if not folder.is_dir():
        return [], []
    found, notes = [], []
    for path in sorted(folder.glob("*__*.json")):
        try:
            result = read_result(path)
        except ReproError as err:
            notes.append(str(err))
            continue
        problem = sidecar_problem(path, result, verify=verify_evidence)
        if problem:
            notes.append(f"{path}: not used: {problem}; `repro eval {result.model_id} --protocol {result.protocol} "
                         "--force` measures it again")
            continue
        found.append((path, result))
    notes += [f"{sidecar}: an evidence sidecar without its result (a write was interrupted); the next run of "
              "that row replaces it" for sidecar in orphan_sidecars(folder)]
    return found, notes


def sidecar_problem(path: str | os.PathLike, result: EvalResult, *, verify: bool) -> str | None:
    """What is wrong between a result and the evidence sidecar it names, in words; None when
    nothing is (or it names none: results from before sidecars). `verify`: hash the sidecar too
    (the report and `status --verify` do; the plan's cheap look does not)."""
    if not result.evidence:
        return None
    sidecar = Path(path).with_name(result.evidence)
    if not sidecar.is_file():
        return f"its evidence sidecar {sidecar.name} is missing"
    if verify and result.evidence_sha256 and file_sha256(sidecar) != result.evidence_sha256:
        return f"its evidence sidecar {sidecar.name} is not the one it was written with (sha256 differs)"
    return None


def orphan_sidecars(folder: str | os.PathLike) -> list[Path]:
    """Evidence sidecars without their result file (a write interrupted between the two)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.evidence.npz"))
            if not p.with_name(p.name[: -len(".evidence.npz")] + ".json").is_file()]
