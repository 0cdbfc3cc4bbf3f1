"""The plan printed before an evaluation: per (model, protocol) the images, forward passes per
image, whether its checkpoint and dataset are there, and an estimate of the time.

The time is an ESTIMATE, not a measurement: forward FLOPs from a per-architecture table
(`GFLOPS_512`, counted once with torch's FlopCounterMode at 512x512 by tools/cost_table.py),
scaled by the pixels each image sends through the network under the protocol (resize rule,
scales, flip, slide windows), divided by an assumed device speed: `CPU_GFLOPS_PER_THREAD` per
torch thread on a CPU (measured on a 2-core development machine running other work), or
`GPU_PEAK_SHARE` of the GPU's fp32 peak (repro.perf; `UNKNOWN_GPU_FLOPS` for an unknown GPU).
Data loading, resizes and the metric are not counted. Light at import (no torch): the functions
that need the resize rule and window grid import them when called.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.perf import device_peak_flops

REFERENCE_PIXELS = 512 * 512
LONG_RUN_SECONDS = 300.0  # a single run estimated shorter prints no plan (and no CPU warning)
# fp32, oneDNN, channels_last: MCIBI R-50-D8 at 512x683 ran one forward (~990 GFLOP) in 3.9 s on
# this project's 2-core machine (~128 GFLOP/s per thread, idle); a little below that for the rest
CPU_GFLOPS_PER_THREAD = 100.0
GPU_PEAK_SHARE = 0.35  # assumed achieved share of the fp32 peak (TF32 off, batch 1-4)
UNKNOWN_GPU_FLOPS = 10e12

# A typical original image of each evaluation split (height, width). Only its shape matters where
# the protocol keeps the aspect ratio; used when the dataset is not there to look at.
TYPICAL_IMAGE_SIZE: dict[str, tuple[int, int]] = {
    "ade20k": (512, 683),
    "cityscapes": (1024, 2048),  # every image
    "cocostuff10k": (480, 640),
    "lip": (256, 192),  # stretched to a square by its protocol: the size does not matter
    "voc": (375, 500),
    "pascalcontext59": (375, 500),
    "vspw": (480, 853),
}
FIXED_SIZE_DATASETS = frozenset({"cityscapes"})  # every image has the same size

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

    def flops_per_second(self) -> float:
        """The assumed sustained speed (see the module docstring)."""
        if self.kind == "cpu":
            return CPU_GFLOPS_PER_THREAD * 1e9 * max(1, self.threads)
        peak = device_peak_flops(self.name)
        return peak * GPU_PEAK_SHARE if peak else UNKNOWN_GPU_FLOPS


def detect_device(device: str = "auto") -> DeviceInfo:
    """The DeviceInfo of a --device value (imports torch)."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and torch.cuda.is_available():
        index = int(name.split(":", 1)[1]) if ":" in name and name.split(":", 1)[1].isdigit() else 0
        if index < torch.cuda.device_count():
            return DeviceInfo("cuda", torch.cuda.get_device_name(index))
    return DeviceInfo("cpu", "cpu", torch.get_num_threads() or os.cpu_count() or 1)


@dataclass(frozen=True)
class PassCount:
    """What one image costs under a protocol: forward passes and pixels sent through the network."""

    passes: int
    pixels: int  # summed over the passes
    exact: bool  # False when it depends on the image size (then computed for a typical image)


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def passes_per_image(protocol: Any, image_size: Sequence[int], fixed_size: bool = False) -> PassCount:
    """Forward passes (scales x flips x windows) and pixels of one image of `image_size` (h, w)."""
    from repro.datasets.transforms import resize_output_size
    from repro.inference import scaled_size, slide_windows

    resize = _get(protocol, "resize")
    output_size, keep_ratio = _get(resize, "output_size"), bool(_get(resize, "keep_ratio"))
    height, width = resize_output_size(int(image_size[0]), int(image_size[1]), output_size, keep_ratio)
    flips = 2 if _get(protocol, "flip") else 1
    slide = _get(protocol, "mode") == "slide"
    passes = pixels = 0
    for scale in _get(protocol, "scales"):
        h, w = scaled_size(height, width, float(scale))
        if slide:
            windows = slide_windows(h, w, _get(protocol, "crop_size"), _get(protocol, "stride"))
            passes += len(windows) * flips
            pixels += sum((win.y2 - win.y1) * (win.x2 - win.x1) for win in windows) * flips
        else:
            passes += flips
            pixels += h * w * flips
    square = not keep_ratio and int(output_size[0]) == int(output_size[1])
    return PassCount(passes, pixels, exact=not slide or fixed_size or square)


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
    blocked: list[str] = field(default_factory=list)
    has_protocols: tuple[str, ...] = ()
    result_on_disk: bool = False
    missing: set[str] = field(default_factory=set)  # "checkpoint" / "dataset": `repro fetch` brings them

    @property
    def ready(self) -> bool:
        return self.protocol is not None and not self.blocked

    def estimate(self, upstream_config: str, device: DeviceInfo) -> None:
        """Fill flops_per_image and seconds from the table (needs images and passes)."""
        if self.passes is None:
            return
        self.flops_per_image = estimated_flops_per_image(upstream_config, self.passes.pixels)
        if self.flops_per_image is not None and self.images is not None:
            self.seconds = self.flops_per_image * self.images / device.flops_per_second()


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
        return self.count is not None and self.official is not None and self.count < self.official


def inspect_dataset(name: str, split: str, data_root: Any = None) -> DatasetInfo:
    """Open a dataset split (if there) to count its images and read the first image's size."""
    from repro.datasets import DATASETS, open_dataset
    from repro.paths import dataset_root

    spec = DATASETS[name]
    root = dataset_root(name, data_root)
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
    videos = getattr(dataset, "videos", None)
    info.count = len(videos) if spec.count_unit == "videos" and videos is not None else len(dataset)
    return info


def _checkpoint_problem(model_id: str, checkpoint: Any) -> str | None:
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
    tta: str
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
    manifest: Any, runs: Sequence[Any], lacking: Sequence[str], tta: str, device: DeviceInfo, *,
    checkpoint: Any = None, data_root: Any = None, limit: int | None = None, allow_subset: bool = False,
    output: Any = None, resume: bool = True, everything: bool = False, variant: str | None = None,
    precision: str = "fp32",
) -> Plan:
    """The plan of `runs` (objects with model_id, protocol) and of the rows `lacking` the protocol.

    `everything`: the runs are the whole zoo (--all, no filter), so missing files are fetched
    with `repro fetch --all` rather than a list of ids.
    """

    datasets: dict[tuple[str, str], DatasetInfo] = {}
    checkpoints: dict[str, str | None] = {}
    rows: list[PlanRow] = []
    for run in runs:
        entry = manifest.get(run.model_id)
        key = (entry.dataset, entry.eval_split)
        if key not in datasets:
            datasets[key] = inspect_dataset(entry.dataset, entry.eval_split, data_root)
        if entry.id not in checkpoints:
            checkpoints[entry.id] = _checkpoint_problem(entry.id, checkpoint)
        row = _plan_row(entry, run.protocol, datasets[key], checkpoints[entry.id], limit, allow_subset)
        row.estimate(entry.upstream_config, device)
        if output is not None and resume:  # a result of another evaluation (--limit, ...) is redone
            same = {"output": output, "limit": limit, "precision": precision, "variant": variant,
                    "data_root": data_root, "checkpoint": checkpoint}
            row.result_on_disk = is_finished(entry.id, run.protocol, same, datasets[key].images)
        rows.append(row)
    for model_id in lacking:
        entry = manifest.get(model_id)
        rows.append(PlanRow(entry.id, None, entry.dataset, has_protocols=tuple(entry.protocols)))
    if lacking:  # --all: back into manifest order (stable: a row's protocols keep their order)
        order = {entry.id: number for number, entry in enumerate(manifest.entries)}
        rows.sort(key=lambda row: order.get(row.model_id, len(order)))
    to_fetch = list(dict.fromkeys(row.model_id for row in rows if row.missing))
    return Plan(rows, device, tta, datasets, to_fetch, fetch_all=everything and len(to_fetch) > 1,
                data_root=str(data_root) if data_root else None)


def _plan_row(entry: Any, protocol_name: str, data: DatasetInfo, checkpoint_problem: str | None,
              limit: int | None, allow_subset: bool) -> PlanRow:
    row = PlanRow(entry.id, protocol_name, entry.dataset, has_protocols=tuple(entry.protocols))
    if checkpoint_problem:
        row.blocked.append(checkpoint_problem)
        if "repro fetch" in checkpoint_problem:  # not cached (a bad --checkpoint path is not fetchable)
            row.missing.add("checkpoint")
    if not data.present:
        row.blocked.append(
            f"dataset folder {data.root} does not exist; fetch it with `repro fetch --dataset {data.name}` "
            f"or pass --data-root / --dataset-root {data.name}=PATH"
        )
        row.missing.add("dataset")
    elif data.problem:
        row.blocked.append(data.problem)
    elif data.subset and not allow_subset and limit is None:
        row.blocked.append(
            f"{data.name} has {data.count} of the official {data.official} {data.unit}: "
            f"pass --allow-subset to evaluate it anyway (partial, never compared)"
        )
    images = data.images if data.images is not None else data.official
    row.images = min(images, limit) if images is not None and limit else images
    size = data.image_size or TYPICAL_IMAGE_SIZE[entry.dataset]
    row.passes = passes_per_image(entry.protocols[protocol_name], size, entry.dataset in FIXED_SIZE_DATASETS)
    return row



# ---------------------------------------------------------------------------------------------
# The plan as text: plain lines, at most ~80 columns except ids and paths, fit for a pipe


def render_plan(plan: Plan) -> list[str]:
    runs = sum(1 for row in plan.rows if row.protocol is not None)
    lines = [f"plan: {runs} run(s) on {plan.device.label}; times are estimates (see `repro eval --help`)"]
    lines += [_dataset_line(info) for info in plan.datasets.values()]
    current = None
    for row in plan.rows:
        if row.protocol is None:
            lines.append(f"{row.model_id}  [no '{plan.tta}' protocol; it has {', '.join(row.has_protocols)}]")
            continue
        if row.model_id != current:
            current = row.model_id
            needs = f"  [not fetched: {' + '.join(sorted(row.missing))}]" if row.missing else ""
            lines.append(f"{row.model_id}{needs}")
        lines.append(_row_line(row))
    return lines + _footer(plan)


def _dataset_line(info: DatasetInfo) -> str:
    head = f"  dataset {info.name} {info.split}:"
    if not info.present:
        return f"{head} not found at {info.root}"
    if info.problem:
        return f"{head} {info.problem}"
    subset = f" (a subset of the official {info.official})" if info.subset else ""
    videos = f" in {info.count} videos" if info.unit == "videos" else ""
    return f"{head} {info.images} images{videos}{subset} at {info.root}"


def _row_line(row: PlanRow) -> str:
    images = "?" if row.images is None else str(row.images)
    count = None if row.passes is None else row.passes.passes
    passes = "?" if row.passes is None else ("" if row.passes.exact else "~") + str(count)
    unit = "pass " if count == 1 else "passes"
    if row.result_on_disk and row.ready:
        status = "result on disk (kept unless --force)"
    elif row.ready:
        status = "ready"
    elif row.missing:
        status = "not fetched"
    else:
        status = row.blocked[0]
    return f"  {row.protocol:<8} {images:>6} img x {passes:>5} {unit} {format_duration(row.seconds):>10}  {status}"


def _footer(plan: Plan) -> list[str]:
    runs = [row for row in plan.rows if row.protocol is not None]
    lacking = sum(1 for row in plan.rows if row.protocol is None)
    ready = plan.ready
    lines = [f"ready: {len(ready)} of {len(runs)} run(s); estimated time: {format_duration(plan.seconds())}"
             f" for the ready ones, {format_duration(plan.seconds(every=True))} for all"]
    if lacking:
        lines.append(f"{lacking} row(s) have no '{plan.tta}' protocol; `--tta documented` measures what each row documents")
    command = plan.fetch_command()
    if command:
        waiting = sum(1 for row in runs if row.missing)
        lines.append(f"{waiting} run(s) wait for files; fetch them with: {command}")
    return lines


# ---------------------------------------------------------------------------------------------
# A finished result on disk (cheap: no checkpoint hashing; the engine's own check is exact)


def is_finished(model_id: str, protocol: str, eval_kwargs: dict[str, Any], folder_images: int | None = None) -> bool:
    """A result file for this (model, protocol) exists, made with the same protocol settings,
    forward variant, precision, limit, dataset folder and checkpoint file, not older than that file.
    (Cheap: no hashing of checkpoints on the submitting host; `--force` resubmits anyway.)
    `folder_images`: the images in the dataset folder now, where known (else a result of a
    subset folder is not finished: the folder may be whole by now)."""
    from repro.manifest import load_manifest
    from repro.results import read_result, result_filename

    entry = load_manifest().get(model_id)
    variant = eval_kwargs.get("variant") or entry.default_variant
    path = Path(eval_kwargs["output"]) / result_filename(model_id, protocol, variant, entry.default_variant)
    if not path.is_file():
        return False
    try:
        result = read_result(path)
    except ReproError:
        return False
    settings = entry.protocols[protocol].model_dump(mode="json")
    return (result.settings == settings and result.variant == variant and result.precision == eval_kwargs.get("precision", "fp32")
            and result.limit == eval_kwargs.get("limit") and result.status in ("complete", "partial", "server")
            and (result.num_images_total == folder_images if folder_images is not None
                 else not (result.partial_reason == "subset" and result.limit is None))
            and _same_data(result, entry.dataset, eval_kwargs.get("data_root"))
            and _same_checkpoint(result, eval_kwargs.get("checkpoint")))


def _same_data(result: Any, dataset: str, data_root: Any) -> bool:
    """The result measured the dataset folder the job would use (the engine redoes another one)."""
    from repro.paths import dataset_root

    return Path(result.data_root).resolve() == dataset_root(dataset, data_root).resolve()


def _same_checkpoint(result: Any, checkpoint: Any) -> bool:
    """The result's checkpoint is the one asked for (if any), still there and not replaced since."""
    if not result.checkpoint:
        return checkpoint is None
    used = Path(result.checkpoint)
    if checkpoint is not None and Path(checkpoint).expanduser().resolve() != used.resolve():
        return False
    try:
        return used.stat().st_mtime <= result.finished.timestamp()
    except OSError:
        return False
