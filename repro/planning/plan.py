"""The plan printed before an evaluation: per (model, protocol) the images, forward passes per
image, whether its checkpoint and dataset are there, and an estimate of the time.

The time is an ESTIMATE, not a measurement: forward FLOPs from a per-architecture table
(`GFLOPS_512`, counted once with torch's FlopCounterMode at 512x512 by tools/cost_table.py),
scaled by the pixels each image sends through the network under the protocol (resize rule,
scales, flip, slide windows), divided by an assumed device speed: `CPU_GFLOPS_PER_THREAD` per
torch thread on a CPU (measured on a 2-core development machine running other work), or
`repro.perf.achieved_flops`: the GPU's fp32 peak x the share measured on an H200, or for tf32 /
tf32-all its TF32 tensor peak x an assumed share (`UNKNOWN_GPU_FLOPS` for an unknown GPU).
Data loading, resizes and the metric are not counted. Light at import (no torch): the functions
that need the resize rule and window grid import them when called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.datasets.base import SplitSize
from repro.datasets.registry import get_spec
from repro.datasets.roots import missing_dataset_message, open_dataset, resolve_dataset_root
from repro.errors import ReproError
from repro.perf import achieved_flops, device_memory_bytes, host_memory_bytes
from repro.text import counted

if TYPE_CHECKING:
    from repro.engine.options import EngineOptions

REFERENCE_PIXELS = 512 * 512
LONG_RUN_SECONDS = 300.0  # a single run estimated shorter prints no plan (and no CPU warning)
# fp32, oneDNN, channels_last: MCIBI R-50-D8 at 512x683 ran one forward (~990 GFLOP) in 3.9 s on
# this project's 2-core machine (~128 GFLOP/s per thread, idle); a little below that for the rest
CPU_GFLOPS_PER_THREAD = 100.0
CPU_SPEED_SOURCE = "measured for R-50 on 2 cores"  # what the budget says of that number
UNKNOWN_GPU_FLOPS = 10e12

# Forward GFLOPs at 512x512, batch 1, per upstream config (tools/cost_table.py regenerates it).
GFLOPS_512: dict[str, float] = {
    "mcibi_deeplabv3_hrnetv2w48_ade20k": 1929.6,
    "mcibi_deeplabv3_hrnetv2w48_cityscapes": 543.0,
    "mcibi_deeplabv3_hrnetv2w48_cocostuff10k": 1931.2,
    "mcibi_deeplabv3_hrnetv2w48_lip": 543.0,
    "mcibi_deeplabv3_resnest101os8_ade20k": 915.3,
    "mcibi_deeplabv3_resnest101os8_cityscapes": 913.7,
    "mcibi_deeplabv3_resnest101os8_cocostuff10k": 915.7,
    "mcibi_deeplabv3_resnest101os8_lip": 913.7,
    "mcibi_deeplabv3_resnet101os8_ade20k": 900.1,
    "mcibi_deeplabv3_resnet101os8_cityscapes": 898.4,
    "mcibi_deeplabv3_resnet101os8_cocostuff10k": 900.5,
    "mcibi_deeplabv3_resnet101os8_lip": 898.4,
    "mcibi_deeplabv3_resnet50os8_ade20k": 744.9,
    "mcibi_deeplabv3_resnet50os8_cityscapes": 743.2,
    "mcibi_deeplabv3_resnet50os8_cocostuff10k": 745.3,
    "mcibi_deeplabv3_resnet50os8_lip": 743.3,
    "mcibi_deeplabv3_vitlarge_ade20k": 813.6,
    "mcibi_deeplabv3_vitlarge_cocostuff10k": 813.7,
    "mcibiplusplus_aspp_hrnetv2w48_cityscapes": 1460.6,
    "mcibiplusplus_aspp_hrnetv2w48_lip": 1391.9,
    "mcibiplusplus_aspp_resnest101os8_cityscapes": 913.8,
    "mcibiplusplus_aspp_resnet101os8_cityscapes": 898.5,
    "mcibiplusplus_aspp_resnet50os8_ade20k": 723.0,
    "mcibiplusplus_aspp_resnet50os8_cityscapes": 709.0,
    "mcibiplusplus_aspp_resnet50os8_cocostuff10k": 746.1,
    "mcibiplusplus_aspp_resnet50os8_lip": 709.0,
    "mcibiplusplus_ppm_resnet50os8_ade20k": 526.0,
    "mcibiplusplus_ppm_resnet50os8_cityscapes": 572.7,
    "mcibiplusplus_ppm_resnet50os8_cocostuff10k": 563.6,
    "mcibiplusplus_ppm_resnet50os8_lip": 526.6,
    "mcibiplusplus_resnet50os8_ade20k": 346.5,
    "mcibiplusplus_resnet50os8_cityscapes": 344.9,
    "mcibiplusplus_resnet50os8_cocostuff10k": 346.9,
    "mcibiplusplus_resnet50os8_lip": 344.9,
    "mcibiplusplus_upernet_resnest101os8_ade20k": 1496.6,
    "mcibiplusplus_upernet_resnest101os8_cocostuff10k": 1332.3,
    "mcibiplusplus_upernet_resnest101os8_lip": 1310.4,
    "mcibiplusplus_upernet_resnest101os8_pascalcontext59": 1493.9,
    "mcibiplusplus_upernet_resnet101os8_ade20k": 1481.3,
    "mcibiplusplus_upernet_resnet101os8_cocostuff10k": 1482.3,
    "mcibiplusplus_upernet_resnet101os8_lip": 1295.1,
    "mcibiplusplus_upernet_resnet101os8_pascalcontext59": 1478.6,
    "mcibiplusplus_upernet_resnet101os8_voc": 1295.1,
    "mcibiplusplus_upernet_resnet101os8_vspw": 1480.6,
    "mcibiplusplus_upernet_resnet50os8_ade20k": 1143.7,
    "mcibiplusplus_upernet_resnet50os8_cityscapes": 1054.0,
    "mcibiplusplus_upernet_resnet50os8_cocostuff10k": 1144.7,
    "mcibiplusplus_upernet_resnet50os8_lip": 1139.9,
    "mcibiplusplus_upernet_resnet50os8_voc": 1322.4,
    "mcibiplusplus_upernet_swinlarge_ade20k": 1039.1,
    "mcibiplusplus_upernet_swinlarge_cocostuff10k": 1039.3,
    "mcibiplusplus_upernet_swinlarge_lip": 684.0,
    "mcibiplusplus_upernet_swinlarge_pascalcontext59": 1037.1,
    "mcibiplusplus_upernet_swinlarge_vspw": 1030.9,
}


@dataclass(frozen=True)
class DeviceInfo:
    """The device a plan is for: kind 'cpu' or 'cuda', its name, and CPU threads."""

    kind: str
    name: str = "cpu"
    threads: int = 1

    @property
    def label(self) -> str:
        return f"{self.name}" if self.kind == "cuda" else f"cpu ({self.threads} threads)"

    @property
    def memory(self) -> int | None:
        """Bytes of memory a run may take: the GPU's (repro.perf's table), or this machine's RAM
        for a CPU (None when unknown)."""
        return device_memory_bytes(self.name) if self.kind == "cuda" else host_memory_bytes()

    def flops_per_second(self, precision: str = "fp32") -> float:
        """The assumed sustained speed (see the module docstring); tf32 / tf32-all: the TF32
        tensor cores' (repro.perf), the fp32 speed where that peak is unknown."""
        if self.kind == "cpu":
            return CPU_GFLOPS_PER_THREAD * 1e9 * max(1, self.threads)
        speed = achieved_flops(self.name, precision) or achieved_flops(self.name)
        return speed or UNKNOWN_GPU_FLOPS


def detect_device(device: str = "auto") -> DeviceInfo:
    """The DeviceInfo of a --device value, read by the engine's one parser, without torch (the
    plan and its errors come before torch loads): GPUs as the NVIDIA driver lists them, less
    those CUDA_VISIBLE_DEVICES hides. A bad choice is the engine's one line (`resolve_device`)."""
    from repro.engine.options import parse_device

    kind, index = parse_device(device)
    gpus = visible_gpus()
    if kind == "auto":
        kind = "cuda" if gpus else "cpu"
    if kind == "cpu":
        return DeviceInfo("cpu", "cpu", cpu_threads())
    if not gpus:
        raise ReproError(f"device '{device}' was requested but CUDA is not available here; use --device cpu")
    if (index or 0) >= len(gpus):
        raise ReproError(f"device '{device}' does not exist: this machine has {counted(len(gpus), 'GPU')}")
    return DeviceInfo("cuda", gpus[index or 0])


NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU, its "information" file names it


def visible_gpus() -> list[str]:
    """Names of the GPUs a CUDA program here would see ("NVIDIA H200"), in PCI order."""
    names = []
    for info in sorted(NVIDIA_GPUS.glob("*/information")) if NVIDIA_GPUS.is_dir() else []:
        model = next((line.split(":", 1)[1].strip() for line in _lines(info) if line.startswith("Model:")), "")
        names.append(model or "NVIDIA GPU")
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is None:
        return names
    wanted = [part.strip() for part in chosen.split(",") if part.strip()]
    if not wanted or wanted[0] == "-1":
        return []
    if all(part.isdigit() for part in wanted):
        return [names[int(part)] for part in wanted if int(part) < len(names)]
    return names[: len(wanted)]  # UUIDs: how many, not which


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def cpu_threads() -> int:
    """The threads torch computes with by default: $OMP_NUM_THREADS, else the usable cores."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class PassCount:
    """What one image costs under a protocol: forward passes and pixels sent through the network."""

    passes: int
    pixels: int  # summed over the passes
    exact: bool  # False when it depends on the image size (then computed for a typical image)


def passes_per_image(protocol: Any, image_size: Sequence[int], fixed_size: bool = False) -> PassCount:
    """Forward passes (scales x flips x windows) and pixels of one image of `image_size` (h, w),
    with the augmentations as inference reads them (`TTASettings`, `scale_inputs`)."""
    from repro.inference.geometry import TTASettings, resize_output_size, scale_inputs
    from repro.manifest import field_of

    resize = field_of(protocol, "resize")
    output_size, keep_ratio = field_of(resize, "output_size"), bool(field_of(resize, "keep_ratio"))
    height, width = resize_output_size(int(image_size[0]), int(image_size[1]), output_size, keep_ratio)
    tta = TTASettings.from_protocol(protocol)
    inputs = scale_inputs(height, width, tta)
    square = not keep_ratio and int(output_size[0]) == int(output_size[1])
    return PassCount(sum(item.count for item in inputs), sum(item.count * item.pixels for item in inputs),
                     exact=tta.mode != "slide" or fixed_size or square)


def estimated_flops_per_image(upstream_config: str, pixels: int) -> float | None:
    """Forward FLOPs of one image from the table, scaled by pixels (None: not in the table)."""
    gflops = GFLOPS_512.get(upstream_config)
    return None if gflops is None else gflops * 1e9 * pixels / REFERENCE_PIXELS


def format_duration(seconds: float | None) -> str:
    """'~40 s', '~12 min', '~3.5 h', '~2.1 d' (always marked as an estimate), '?' when unknown."""
    if seconds is None or math.isnan(seconds):
        return "?"
    if seconds == 0:
        return "0 s"
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    return f"~{seconds / 86400:.1f} d"


@dataclass
class PlanRow:
    """One (model, protocol) of a plan; `blocked` says why it cannot run now (empty: ready)."""

    model_id: str
    protocol: str | None  # None: the row has no protocol of the requested name
    dataset: str
    images: int | None = None  # to evaluate (after --limit)
    passes: PassCount | None = None
    flops_per_image: float | None = None
    seconds: float | None = None
    peak_memory: int | None = None  # bytes, estimated (repro.inference.footprint): host RSS on a CPU, device memory on a GPU
    blocked: list[str] = field(default_factory=list)
    has_protocols: tuple[str, ...] = ()
    result_on_disk: bool = False  # a result of this very evaluation (cheap level): kept unless --force
    result_file: str | None = None  # the file the run writes (and keeps, or replaces with --force)
    replaces: bool = False  # --force: a complete result on disk will be replaced (kept beside, renamed)
    missing: set[str] = field(default_factory=set)  # "checkpoint" / "dataset": `repro fetch` brings them

    @property
    def ready(self) -> bool:
        return self.protocol is not None and not self.blocked

    def estimate(self, upstream_config: str, device: DeviceInfo, precision: str = "fp32") -> None:
        """Fill flops_per_image and seconds from the table (needs images and passes)."""
        if self.passes is None:
            return
        self.flops_per_image = estimated_flops_per_image(upstream_config, self.passes.pixels)
        if self.flops_per_image is not None and self.images is not None:
            self.seconds = self.flops_per_image * self.images / device.flops_per_second(precision)

    def estimate_memory(self, entry: Any, image_size: tuple[int, int], device: DeviceInfo, max_batch: int) -> None:
        """Fill peak_memory: one image of `image_size` under the row's protocol, batched as the
        engine batches on `device` (None: the architecture is not in the memory table)."""
        from repro.inference.footprint import estimate_peak, footprint_of

        footprint = footprint_of(entry.upstream_config)
        if footprint is None or self.protocol is None:
            return
        self.peak_memory = estimate_peak(footprint, entry.protocols[self.protocol], image_size, entry.num_classes,
                                         device.kind, max_batch=max_batch, device_memory=device.memory).total


@dataclass
class DatasetInfo:
    """What is on disk for one dataset split, looked at once per plan."""

    name: str
    root: str
    present: bool
    split: str = ""
    problem: str | None = None  # a bad layout: the checks' first line
    images: int | None = None
    count: int | None = None  # in the official count's unit (images, or videos for VSPW)
    official: int | None = None
    unit: str = "images"
    image_size: tuple[int, int] | None = None  # of the first image

    @property
    def subset(self) -> bool:
        return self.count is not None and self.size().subset

    def size(self) -> SplitSize:
        """The folder's size against the official split (repro.datasets' one rule)."""
        return SplitSize(self.count or 0, self.official, self.unit)


def inspect_dataset(name: str, split: str, data_root: Any = None, dataset_roots: Any = None) -> DatasetInfo:
    """Open a dataset split (if there) to count its images and read the first image's size;
    `data_root` and `dataset_roots` (--data-root, --dataset-root) say where it is."""
    spec = get_spec(name)
    root = resolve_dataset_root(name, data_root, dataset_roots)
    info = DatasetInfo(name, str(root), root.is_dir(), split, official=spec.splits.get(split), unit=spec.count_unit)
    if not info.present:
        return info
    try:
        dataset = open_dataset(name, root, split)
        info.image_size = tuple(dataset[0].image.shape[:2])
    except ReproError as err:
        info.problem = str(err)
        return info
    info.images = len(dataset)
    info.count = spec.size(split, dataset).found
    return info


def _missing_checkpoint(model_id: str, checkpoint: Any) -> str | None:
    from repro.fetch import resolve_checkpoint

    try:
        resolve_checkpoint(model_id, checkpoint)
    except ReproError as err:
        return str(err)
    return None


@dataclass
class Plan:
    rows: list[PlanRow]
    device: DeviceInfo
    protocol: str  # as asked (--protocol): a protocol name or 'documented'
    datasets: dict[tuple[str, str], DatasetInfo]
    to_fetch: list[str]  # model ids whose checkpoint or dataset is not there (in plan order)
    fetch_all: bool = False  # every model of the zoo needs something: `repro fetch --all`
    data_root: str | None = None

    @property
    def ready(self) -> list[PlanRow]:
        return [row for row in self.rows if row.ready]

    def seconds(self, every: bool = False) -> float | None:
        """Estimated time of the ready rows (`every`: of all runs) without a result on disk
        (None if one is unknown)."""
        rows = [row for row in self.rows if row.protocol is not None] if every else self.ready
        todo = [row.seconds for row in rows if not row.result_on_disk]
        return None if any(s is None for s in todo) else float(sum(todo))

    def fetch_command(self) -> str | None:
        """The one command that fetches every missing checkpoint and dataset."""
        if not self.to_fetch:
            return None
        where = f" --data-root {self.data_root}" if self.data_root else ""
        return f"repro fetch {'--all' if self.fetch_all else ' '.join(self.to_fetch)}{where}"


def build_plan(
    manifest: Any, runs: Sequence[Any], lacking: Sequence[str], protocol: str, device: DeviceInfo,
    options: EngineOptions | None = None, *, everything: bool = False, results_on_disk: bool = True,
) -> Plan:
    """The plan of `runs` (objects with model_id, protocol) and of the rows `lacking` the protocol
    asked for, run with `options` (None: the defaults).

    `everything`: the runs are the whole zoo (--all, no filter), so missing files are fetched
    with `repro fetch --all` rather than a list of ids. `results_on_disk` False: no look at the
    results folder (a budget of every run, whatever was measured).
    """
    from repro.engine.options import EngineOptions

    options = options or EngineOptions()
    checkpoint, data_root, limit = options.checkpoint, options.data_root, options.limit

    datasets: dict[tuple[str, str], DatasetInfo] = {}
    checkpoints: dict[str, str | None] = {}
    rows: list[PlanRow] = []
    for run in runs:
        entry = manifest.get(run.model_id)
        key = (entry.dataset, entry.eval_split)
        if key not in datasets:
            datasets[key] = inspect_dataset(entry.dataset, entry.eval_split, data_root, options.dataset_roots)
        if entry.id not in checkpoints:
            checkpoints[entry.id] = _missing_checkpoint(entry.id, checkpoint)
        row = _plan_row(entry, run.protocol, datasets[key], checkpoints[entry.id], limit, options.allow_subset)
        row.estimate(entry.upstream_config, device, options.precision)
        row.estimate_memory(entry, datasets[key].image_size or get_spec(entry.dataset).typical_image_size, device,
                            options.max_batch)
        if results_on_disk:
            _mark_result_on_disk(row, options, datasets[key], options.force)
        rows.append(row)
    for model_id in lacking:
        entry = manifest.get(model_id)
        rows.append(PlanRow(entry.id, None, entry.dataset, has_protocols=tuple(entry.protocols)))
    if lacking:  # --all: back into manifest order (stable: a row's protocols keep their order)
        order = {entry.id: number for number, entry in enumerate(manifest.entries)}
        rows.sort(key=lambda row: order.get(row.model_id, len(order)))
    to_fetch = list(dict.fromkeys(row.model_id for row in rows if row.missing))
    return Plan(rows, device, protocol, datasets, to_fetch, fetch_all=everything and len(to_fetch) > 1,
                data_root=str(data_root) if data_root else None)


def _plan_row(entry: Any, protocol_name: str, data: DatasetInfo, checkpoint_problem: str | None,
              limit: int | None, allow_subset: bool) -> PlanRow:
    row = PlanRow(entry.id, protocol_name, entry.dataset, has_protocols=tuple(entry.protocols))
    if checkpoint_problem:
        row.blocked.append(checkpoint_problem)
        if "repro fetch" in checkpoint_problem:  # not cached (a bad --checkpoint path is not fetchable)
            row.missing.add("checkpoint")
    spec = get_spec(entry.dataset)
    if not data.present:
        row.blocked.append(missing_dataset_message(data.name, Path(data.root)))
        row.missing.add("dataset")
    elif data.problem:
        row.blocked.append(data.problem)
    elif data.subset and not allow_subset and limit is None:
        row.blocked.append(data.size().refusal(data.name))
    images = data.images if data.images is not None else spec.expected_images(data.split)
    row.images = min(images, limit) if images is not None and limit else images
    size = data.image_size or spec.typical_image_size
    row.passes = passes_per_image(entry.protocols[protocol_name], size, spec.fixed_image_size)
    return row



# ---------------------------------------------------------------------------------------------
# The plan as text: plain lines, at most ~80 columns except ids and paths, fit for a pipe


def render_plan(plan: Plan) -> list[str]:
    runs = sum(1 for row in plan.rows if row.protocol is not None)
    lines = [f"plan: {counted(runs, 'run')} on {plan.device.label}; times are estimates (see `repro eval --help`)"]
    lines += [_dataset_line(info) for info in plan.datasets.values()]
    current = None
    for row in plan.rows:
        if row.protocol is None:
            lines.append(f"{row.model_id}  [no '{plan.protocol}' protocol; it has {', '.join(row.has_protocols)}]")
            continue
        if row.model_id != current:
            current = row.model_id
            needs = f"  [not fetched: {' + '.join(sorted(row.missing))}]" if row.missing else ""
            lines.append(f"{row.model_id}{needs}")
        lines.append(_row_line(row, plan.device.memory))
    return lines + _footer(plan)


def _dataset_line(info: DatasetInfo) -> str:
    head = f"  dataset {info.name} {info.split}:"
    if not info.present:
        return f"{head} not found at {info.root}"
    if info.problem:
        return f"{head} {info.problem}"
    subset = f" (a subset of the official {info.official})" if info.subset else ""
    videos = f" in {counted(info.count, 'video')}" if info.unit == "videos" else ""
    return f"{head} {counted(info.images, 'image')}{videos}{subset} at {info.root}"


def _row_line(row: PlanRow, memory: int | None) -> str:
    images = "?" if row.images is None else str(row.images)
    count = None if row.passes is None else row.passes.passes
    passes = "?" if row.passes is None else ("" if row.passes.exact else "~") + str(count)
    unit = "pass " if count == 1 else "passes"
    if row.result_on_disk and row.ready:
        status = "result on disk (kept unless --force)"
    elif row.replaces and row.ready:
        status = "ready; replaces the result on disk (--force; the old file is kept, renamed)"
    elif row.ready:
        status = "ready"
    elif row.missing:
        status = "not fetched"
    else:
        status = row.blocked[0]
    peak = "mem " + format_memory(row.peak_memory, memory)
    return f"  {row.protocol:<8} {images:>6} img x {passes:>5} {unit} {format_duration(row.seconds):>8}  {peak:>15}  {status}"


def format_memory(peak: int | None, memory: int | None = None) -> str:
    """An estimated peak: '4.7 GiB', '4.7/80 GiB' against the device's memory, '?' when unknown."""
    if peak is None:
        return "?"
    if memory is None:
        return f"{peak / 2**30:.1f} GiB"
    return f"{peak / 2**30:.1f}/{memory / 2**30:.0f} GiB"


def _footer(plan: Plan) -> list[str]:
    runs = [row for row in plan.rows if row.protocol is not None]
    lacking = sum(1 for row in plan.rows if row.protocol is None)
    ready = plan.ready
    lines = [f"ready: {len(ready)} of {counted(len(runs), 'run')}; estimated time: {format_duration(plan.seconds())}"
             f" for the ready ones, {format_duration(plan.seconds(every=True))} for all"]
    if lacking:
        lines.append(f"{counted(lacking, 'row')} {'has' if lacking == 1 else 'have'} no '{plan.protocol}' protocol; `--protocol documented` measures what each row documents")
    over = [row for row in runs if row.peak_memory is not None and plan.device.memory is not None
            and row.peak_memory > plan.device.memory]
    if over:
        names = ", ".join(f"{row.model_id} {row.protocol}" for row in over[:3]) + (", ..." if len(over) > 3 else "")
        lines.append(f"{counted(len(over), 'run')} {'needs' if len(over) == 1 else 'need'} more than the "
                     f"{plan.device.memory / 2**30:.0f} GiB of "
                     f"{plan.device.label} (estimated peak): {names}")
    command = plan.fetch_command()
    if command:
        waiting = sum(1 for row in runs if row.missing)
        lines.append(f"{counted(waiting, 'run')} {'waits' if waiting == 1 else 'wait'} for files; fetch them with: {command}")
    return lines


# ---------------------------------------------------------------------------------------------
# A finished result on disk: repro.results.same_evaluation decides, for the plan, the launcher and
# the CLI's "kept" (cheap: no hashing; exact: the checkpoint's sha256, as the engine checks)


def planned_result(entry: Any, protocol: str, options: EngineOptions, data: DatasetInfo | None = None, *,
                   exact: bool = False) -> tuple[Path, Any]:
    """(the file a run of `options` writes, the RunConditions it runs under). `data`: the dataset
    as the plan saw it (looked at now when None). exact: with the checkpoint's sha256 (hashed once
    per file per process, repro.fetch.download.file_digest)."""
    from repro.fetch import resolve_checkpoint
    from repro.results.files import run_result_name
    from repro.results.freshness import RunConditions

    data = data or inspect_dataset(entry.dataset, entry.eval_split, options.data_root, options.dataset_roots)
    variant = options.variant or entry.default_variant
    precision, limit, asked = options.precision, options.limit, options.checkpoint
    try:
        checkpoint = resolve_checkpoint(entry.id, asked)
    except ReproError:  # not there: an asked-for path still tells results apart, the cache does not
        checkpoint = Path(asked).expanduser() if asked is not None else None
    digest = None
    if exact and checkpoint is not None:
        from repro.fetch.download import file_digest

        digest = file_digest(checkpoint)
    conditions = RunConditions(
        model_id=entry.id, protocol=protocol, settings=entry.protocols[protocol].model_dump(mode="json"),
        variant=variant, precision=precision, dataset=entry.dataset, split=entry.eval_split,
        data_root=data.root if data.present else None, limit=limit, folder_images=data.images,
        checkpoint=str(checkpoint) if checkpoint is not None else None, checkpoint_sha256=digest,
    )
    name = run_result_name(entry.id, protocol, variant=variant, default_variant=entry.default_variant,
                           precision=precision, limit=limit, subset=data.subset, folder_images=data.images)
    return options.results_folder / name, conditions


def finished_result(model_id: str, protocol: str, options: EngineOptions, data: DatasetInfo | None = None, *,
                    exact: bool = False) -> tuple[Path, Any, list[str]]:
    """(the result file of this run, its result or None, what differs from this run: empty when
    the result is finished), by the engine's rule (repro.results.freshness.result_on_disk)."""
    from repro.manifest import load_manifest
    from repro.results.freshness import result_on_disk

    path, conditions = planned_result(load_manifest().get(model_id), protocol, options, data, exact=exact)
    on_disk = result_on_disk(path, conditions, exact=exact)
    return path, on_disk.result, on_disk.differences


def _mark_result_on_disk(row: PlanRow, options: EngineOptions, data: DatasetInfo, force: bool) -> None:
    """Kept (the same evaluation is on disk), or blocked: a complete result of other conditions
    is replaced only with --force (and then kept beside, renamed)."""
    path, result, differences = finished_result(row.model_id, row.protocol, options, data)
    row.result_file = str(path)
    if result is None:
        return
    from repro.results.freshness import OnDisk

    on_disk = OnDisk(path, result, differences)
    row.result_on_disk = on_disk.finished and not force
    row.replaces = force and result.status == "complete"
    refused = on_disk.refusal(force)
    if refused:
        row.blocked.append(refused)


def is_finished(model_id: str, protocol: str, options: EngineOptions, data: DatasetInfo | None = None) -> bool:
    """A result of this very evaluation is on disk (cheap level: no checkpoint hashing). `data`:
    the dataset as the plan saw it (looked at now when None)."""
    _, result, differences = finished_result(model_id, protocol, options, data)
    return result is not None and not differences


def unfinished(runs: Sequence[Any], options: EngineOptions) -> list[Any]:
    """The runs (objects with model_id and protocol) without a finished result on disk, judged
    as the plan judges them (each dataset looked at once); all of them with `force`."""
    from repro.manifest import load_manifest

    runs = list(runs)
    if options.force:
        return runs
    manifest, seen = load_manifest(), {}
    todo = []
    for run in runs:
        entry = manifest.get(run.model_id)
        key = (entry.dataset, entry.eval_split)
        if key not in seen:
            seen[key] = inspect_dataset(entry.dataset, entry.eval_split, options.data_root, options.dataset_roots)
        if not is_finished(run.model_id, run.protocol, options, seen[key]):
            todo.append(run)
    return todo
