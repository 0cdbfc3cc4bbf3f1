"""Cluster launcher for `repro eval --launcher local|slurm`: one job per (model, protocol).

It sits beside the CLI, outside the data path: each job calls `repro.engine.evaluate`, the
same resumable entry point as `repro eval`, with the same output folder, so results land where a
local run puts them, an interrupted job resumes from its saved progress when resubmitted, and a
rerun of the launch submits only the (model, protocol) pairs without a finished result. A job
with several GPUs runs one task per GPU; submitit exports the torch.distributed variables and the
engine splits the images over the ranks (each image once, matrices summed).

Jobs are sized from a cost estimate (`estimate_gpu_seconds`, swappable through `COST_MODEL`):
GPU count from the estimate and a target wall time, time limit from the estimate with a margin.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.engine.options import EngineOptions
from repro.errors import ReproError
from repro.text import counted

LAUNCHERS = ("local", "slurm")
TARGET_JOB_SECONDS = 2 * 3600  # add GPUs to a job until its estimate fits in this
TIME_MARGIN = 1.5  # the time limit is the estimate times this, plus SETUP_MINUTES
SETUP_MINUTES = 10  # start-up, model build, checkpoint hashing, dataset listing
MAX_MINUTES = 48 * 60
LAUNCH_RECORD = "launched.json"  # under the log folder: job id per (model, protocol)


@dataclass(frozen=True)
class LaunchOptions:
    launcher: str = "local"  # "local" (submitit's LocalExecutor) or "slurm"
    folder: Path | None = None  # submitit's logs and pickles (default: <results>/.submitit)
    partition: str | None = None
    max_gpus: int = 1  # GPUs per job at most; the estimate decides how many below that
    time_min: int | None = None  # job time limit; None = from the estimate
    account: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # --slurm-opt key=value (sbatch options)
    wait_jobs: bool = False  # block until every job ends (always for the local launcher)


@dataclass(frozen=True)
class JobPlan:
    model_id: str
    protocol: str
    gpu_seconds: float  # estimated, on one GPU
    gpus: int
    minutes: int

    @property
    def name(self) -> str:
        return f"repro-{self.model_id}-{self.protocol}"


# ---------------------------------------------------------------------------------------------
# Cost estimate: repro.planning.plan's (FLOP table x pixels per protocol x images / assumed device speed)

CLUSTER_GPU = "A100"  # the GPU the time limits assume (repro.planning.plan's speed for it); a rough figure


def gpu_seconds_per_flop() -> float:
    from repro.planning.plan import DeviceInfo

    return 1.0 / DeviceInfo("cuda", CLUSTER_GPU).flops_per_second()


def images_in_split(entry: Any) -> int:
    """The images of the row's official evaluation split (estimated where it counts videos)."""
    from repro.datasets.registry import get_spec

    spec = get_spec(entry.dataset)
    split = entry.eval_split if entry.eval_split in spec.splits else max(spec.splits, key=spec.splits.get)
    return spec.expected_images(split)


def estimate_gpu_seconds(model_id: str, protocol_name: str, limit: int | None = None, row: Any = None) -> float:
    """Single-GPU seconds for one (model, protocol): from the plan's row when given (it looked at
    the dataset), else from the manifest, the official image count and a typical image size."""
    if row is not None and row.flops_per_image and row.images:
        return row.flops_per_image * row.images * gpu_seconds_per_flop()
    from repro.datasets.registry import get_spec
    from repro.manifest import load_manifest
    from repro.planning.plan import estimated_flops_per_image, passes_per_image

    entry = load_manifest().get(model_id)
    spec = get_spec(entry.dataset)
    passes = passes_per_image(entry.protocols[protocol_name], spec.typical_image_size, spec.fixed_image_size)
    flops = estimated_flops_per_image(entry.upstream_config, passes.pixels) or 2e12 * passes.pixels / 512**2
    images = images_in_split(entry) if limit is None else min(limit, images_in_split(entry))
    return flops * images * gpu_seconds_per_flop()


COST_MODEL: Callable[..., float] = estimate_gpu_seconds  # (model_id, protocol, limit, row) -> seconds


def plan_job(model_id: str, protocol: str, options: LaunchOptions, limit: int | None = None, row: Any = None) -> JobPlan:
    seconds = COST_MODEL(model_id, protocol, limit, row)
    gpus = max(1, min(options.max_gpus, math.ceil(seconds / TARGET_JOB_SECONDS)))
    minutes = options.time_min or math.ceil(seconds * TIME_MARGIN / gpus / 60) + SETUP_MINUTES
    return JobPlan(model_id, protocol, seconds, gpus, int(min(max(minutes, 1), MAX_MINUTES)))


# ---------------------------------------------------------------------------------------------
# What still needs a job


def pending(runs: Iterable[Any], options: EngineOptions) -> list[Any]:
    """The runs (objects with model_id and protocol) to submit: all with --force, else those
    without a finished result (the plan's rule, `repro.planning.plan.unfinished`)."""
    from repro.planning.plan import unfinished

    return unfinished(runs, options)


# ---------------------------------------------------------------------------------------------
# The job


def run_one(model_id: str, protocol: str, options: EngineOptions) -> dict[str, Any]:
    """What each job executes: one resumable evaluation (one rank per task with several GPUs);
    `options` carry the submitting command's dataset folders (data_root, dataset_roots)."""
    _export_distributed()
    from repro.engine import evaluate

    result = evaluate(model_id, protocol, options)
    return {"model_id": model_id, "protocol": protocol, "status": result.status, "miou": result.miou,
            "num_images": result.num_images, "world_size": result.world_size}


def _export_distributed() -> None:
    """Under a submitit job of several tasks, set RANK/WORLD_SIZE/MASTER_* for torch.distributed."""
    try:
        import submitit

        env = submitit.JobEnvironment()
    except (ImportError, RuntimeError):
        return  # not inside a submitit job
    if env.num_tasks > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


# ---------------------------------------------------------------------------------------------
# Submission


def executor_parameters(plan: JobPlan, options: LaunchOptions) -> dict[str, Any]:
    """submitit AutoExecutor parameters for one job (generic names plus slurm_* ones)."""
    params: dict[str, Any] = {"name": plan.name, "timeout_min": plan.minutes, "tasks_per_node": plan.gpus,
                              "nodes": 1}
    if options.launcher == "slurm":
        params.update(gpus_per_node=plan.gpus, cpus_per_task=max(2, min(8, os.cpu_count() or 2)))
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.account:
            params["slurm_account"] = options.account
        if options.extra:
            params["slurm_additional_parameters"] = dict(options.extra)
    return params


def parse_slurm_opts(items: Sequence[str] | None) -> dict[str, str]:
    """['qos=high', 'constraint=a100'] -> {'qos': 'high', 'constraint': 'a100'}."""
    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ReproError(f"--slurm-opt takes key=value (an sbatch option without '--'), not '{item}'")
        parsed[key.strip().lstrip("-").replace("-", "_")] = value.strip()
    return parsed


def _executor(options: LaunchOptions, folder: Path):
    try:
        import submitit
    except ImportError:
        raise ReproError("the cluster launcher needs submitit: pip install submitit") from None
    if options.launcher not in LAUNCHERS:
        raise ReproError(f"unknown launcher '{options.launcher}'; use one of {', '.join(LAUNCHERS)}")
    try:
        return submitit.AutoExecutor(folder=folder / "%j", cluster=options.launcher)
    except RuntimeError as err:  # e.g. no sbatch on this machine
        raise ReproError(f"cannot use the {options.launcher} launcher here: {str(err).splitlines()[0]}") from None


def submit(
    runs: Iterable[Any], engine_options: EngineOptions, options: LaunchOptions, *,
    plan_rows: Sequence[Any] = (), say: Callable[[str], None] = print,
) -> list[tuple[JobPlan, Any]]:
    """Submit one job per unfinished run; returns (plan, submitit job) pairs. `plan_rows`
    (repro.planning.plan rows) give the cost estimates where they cover a run."""
    rows = {(row.model_id, row.protocol): row for row in plan_rows}
    engine_options = engine_options.absolute()  # as the job must see them (it may start elsewhere)
    folder = Path(options.folder or engine_options.results_folder / ".submitit").resolve()
    runs = list(runs)
    todo = pending(runs, engine_options)
    if len(todo) < len(runs):
        say(f"{len(runs) - len(todo)} of {len(runs)} runs already have a result (use --force to redo them)")
    if not todo:
        return []
    executor = _executor(options, folder)
    submitted = []
    for run in todo:
        plan = plan_job(run.model_id, run.protocol, options, engine_options.limit,
                        rows.get((run.model_id, run.protocol)))
        executor.update_parameters(**executor_parameters(plan, options))
        try:
            job = executor.submit(run_one, run.model_id, run.protocol,
                                  engine_options.for_run(run.model_id, run.protocol, len(runs)))
        except RuntimeError as err:  # e.g. sbatch refused a partition or account (submitit's FailedJobError)
            if submitted:
                _record_jobs(folder, submitted)  # the jobs already submitted stay on record
            lines = [line for line in str(err).strip().splitlines() if line.strip()]
            raise ReproError(f"submitting {run.model_id} {run.protocol} failed: "
                             f"{lines[0] if lines else type(err).__name__}") from None
        submitted.append((plan, job))
        say(f"submitted {job.job_id}: {run.model_id} {run.protocol} "
            f"({plan.gpus} GPU, {plan.minutes} min, est. {plan.gpu_seconds / 3600:.1f} GPU-h)")
    _record_jobs(folder, submitted)
    return submitted


def _record_jobs(folder: Path, submitted: list[tuple[JobPlan, Any]]) -> None:
    from repro.fileio import atomic_write_text

    path = folder / LAUNCH_RECORD
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    for plan, job in submitted:
        known[f"{plan.model_id}__{plan.protocol}"] = {"job_id": str(job.job_id), "gpus": plan.gpus,
                                                      "minutes": plan.minutes, "folder": str(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(known, indent=2, sort_keys=True) + "\n")


def wait(submitted: list[tuple[JobPlan, Any]], *, say: Callable[[str], None] = print) -> int:
    """Block until every job ends; print one line each; returns the number that failed."""
    failed = 0
    for plan, job in submitted:
        try:
            summary = job.result()
        except Exception as err:  # submitit re-raises the job's error with its log
            failed += 1
            last = [line for line in str(err).strip().splitlines() if line.strip()]
            say(f"job {job.job_id} {plan.model_id} {plan.protocol}: failed: {last[-1] if last else type(err).__name__}")
            continue
        miou = "n/a" if summary.get("miou") is None else f"{summary['miou']:.2f}"
        say(f"job {job.job_id} {plan.model_id} {plan.protocol}: {summary['status']}, mIoU {miou}")
    return failed


def launch_options(launcher: str | None, *, partition: str | None = None, max_gpus: int = 1,
                   time_min: int | None = None, account: str | None = None, extra: Sequence[str] | None = None,
                   wait_jobs: bool = False) -> LaunchOptions | None:
    """`repro eval`'s cluster options, checked once before any work (None without --launcher):
    --slurm-* and --wait-jobs only with --launcher slurm, --slurm-opt KEY=VALUE well formed."""
    given = [name for name, value in (("--slurm-partition", partition), ("--slurm-account", account),
                                      ("--slurm-opt", extra), ("--slurm-time-min", time_min),
                                      ("--wait-jobs", wait_jobs)) if value]
    if given and launcher != "slurm":
        names, plural = ", ".join(given), len(given) > 1
        rule = (("need" if plural else "needs") + " --launcher slurm" if launcher is None
                else ("apply" if plural else "applies") + " to --launcher slurm only")
        why = " (the local launcher always waits)" if "--wait-jobs" in given and launcher == "local" else ""
        raise ReproError(f"{names} {rule}{why}")
    if launcher is None:
        return None
    return LaunchOptions(launcher=launcher, partition=partition, max_gpus=max_gpus, time_min=time_min, account=account,
                         extra=parse_slurm_opts(extra), wait_jobs=wait_jobs or launcher == "local")


def launch_from_cli(
    runs: Sequence[Any], options: LaunchOptions, engine_options: EngineOptions, *,
    plan_rows: Sequence[Any] = (), say: Callable[[str], None] = print,
) -> int:
    """`repro eval --launcher ...`: submit, then (local launcher, or --wait-jobs) wait; returns failures."""
    submitted = submit(runs, engine_options, options, plan_rows=plan_rows, say=say)
    if not submitted:
        say("nothing to submit")
        return 0
    if not options.wait_jobs:
        say(f"{counted(len(submitted), 'job')} submitted; logs in {submitted[0][1].paths.folder.parent}; "
            f"rerun the same command to resubmit unfinished ones")
        return 0
    return wait(submitted, say=say)
