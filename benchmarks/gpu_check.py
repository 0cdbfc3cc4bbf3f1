"""GPU speed, memory and agreement: repro's Predictor vs `reference_predict` (upstream's loop),
in fp32 and in TF32 (issue 17), and the thread loader through the engine and the CLI.

Real-size cases, weights from the deterministic fill, under a cap of `--memory-cap-gib` (24 GiB:
the issue's budget) on the GPU's allocator:

* ade20k:     MCIBI R-50 ADE20k, ms+flip (whole, six scales), 512x683 images
* swin:       MCIBI++ UPerNet Swin-L ADE20k, ms+flip slide 640x640 windows, a 640x853 image
* vit:        MCIBI ViT-L ADE20k, ms+flip slide 512x512 windows, a 512x683 image
* cityscapes: MCIBI++ ASPP R-101 Cityscapes, ms+flip slide, a 1024x2048 image

For each case the reference loop runs (batch 1, NCHW, cudnn.benchmark off, CPU-side resizes
and sums, as upstream's test.py) in fp32 (TF32 off, its test.py since f2650a08, 2023-05-29) and
with PyTorch's default TF32 (convolutions in TF32: what its test.py did before), then each engine
setting (precision fp32 / tf32 / tf32-all, network layout, cuDNN autotuner, max_batch): seconds per
image (argmax included, after one untimed image of the same size whose time is kept as
`first_image_seconds`), ratio to the fp32 loop, argmax agreement with the fp32 loop (% of pixels),
max |score difference|, peak device memory and how often max_batch was halved. Each row records
the `arithmetic` it ran in (on a device without TF32, the --tiny CPU run, TF32 rows run fp32).

`--e2e N` first runs a whole evaluation of N images through the engine (`run_job` with its
defaults: loader threads, predictor, confusion matrix, result record) on synthetic ADE20k-size
images, next to the reference loop over the same images, then a second `run_job` in the same
process (it hung with forked loaders once). `--loader` then runs `repro eval` of two models in one
command (synthetic LIP, filled checkpoints imported with `repro fetch --from`).
`--tiny` shrinks the images (a CPU check of this script; the models stay full size).

    python benchmarks/gpu_check.py --device cuda --e2e 6 --loader --json $OUT/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --tiny --cases ade20k --e2e 2 --loader
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.engine.devices import environment
from repro.inference.predictor import Predictor
from repro.inference.reference import reference_predict
from repro.manifest import load_manifest
from repro.models import build_segmentor, fill_model
from repro.numerics import COMPARABLE, arithmetic, tf32_unavailable

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    """One engine configuration to time."""

    name: str
    channels_last: bool
    cudnn_benchmark: bool
    precision: str = "fp32"
    max_batch: int = 4


SETTINGS = {s.name: s for s in (
    Setting("nchw", False, False),  # the engine's CUDA default: fp32, TF32 off
    Setting("tf32", False, False, precision="tf32"),  # TF32 convolutions (PyTorch >= 1.12 default)
    Setting("tf32-all", False, False, precision="tf32-all"),  # and TF32 matmuls (1.7-1.11 default)
    Setting("nhwc", True, False),
    Setting("nchw+bench", False, True),
    Setting("nhwc+bench", True, True),
    Setting("nhwc+bench+b8", True, True, max_batch=8),
    Setting("bf16", True, True, precision="bf16"),
)}


@dataclass(frozen=True)
class Case:
    name: str
    model_id: str
    protocol: str
    size: tuple[int, int]  # test-transformed (= original) image, height x width
    tiny_size: tuple[int, int]
    images: int  # timed images per setting
    settings: tuple[str, ...]


ISSUE_17 = ("nchw", "tf32", "tf32-all")  # per case: repro fp32, tf32, tf32-all
CASES = (
    Case("ade20k", "mcibi_deeplabv3_r50_ade20k", "ms+flip", (512, 683), (64, 85), 3, ISSUE_17),
    Case("cityscapes", "memorynetv2_aspp_resnet101os8_cityscapes", "ms+flip", (1024, 2048), (96, 192), 1, ISSUE_17),
    Case("swin", "memorynetv2_upernet_swinlarge_ade20k", "ms+flip", (640, 853), (64, 85), 1, ISSUE_17),
    Case("vit", "mcibi_deeplabv3_vitlarge_ade20k", "ms+flip", (512, 683), (64, 85), 1, ISSUE_17),
)
REFERENCES = ("fp32", "tf32")  # upstream's loop: its test.py since 2023-05-29, and before it


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_images(fn, warm, images, device) -> dict:
    """`fn` on `warm` (untimed in the per-image figure: cuDNN's choices, the allocator), then
    seconds per image of `fn` + argmax over `images`, and the peak memory of both; the scores
    are moved to the CPU untimed."""
    _reset_peak(device)
    start = time.perf_counter()
    fn(warm)
    _sync(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    scores = []
    for image in images:
        out = fn(image)
        out.argmax(0)  # the prediction, where the scores are (upstream: on the CPU)
        scores.append(out)
    _sync(device)
    seconds = (time.perf_counter() - start) / len(images)
    return {"seconds_per_image": seconds, "first_image_seconds": first, "peak_memory_bytes": _peak(device),
            "scores": [s.float().cpu() for s in scores]}


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _agreement(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> dict:
    agree = sum(int((a.argmax(0) == b.argmax(0)).sum()) for a, b in zip(ours, theirs))
    pixels = sum(a[0].numel() for a in ours)
    return {"argmax_agreement_percent": 100.0 * agree / pixels, "argmax_differing_pixels": pixels - agree,
            "max_abs_score_diff": max(float((a - b).abs().max()) for a, b in zip(ours, theirs))}


def _arithmetic(precision: str, device: torch.device):
    """(the switches of `precision` for a `with`, the arithmetic that runs): bf16 / fp16 keep
    float32 exact outside autocast; where the device has no TF32 (the --tiny CPU run) TF32 rows
    run in fp32 and say so."""
    name = precision if precision in COMPARABLE else "fp32"
    if name != "fp32" and tf32_unavailable(device):
        return arithmetic("fp32", device), f"fp32 (no TF32 on {device.type})"
    return arithmetic(name, device), precision


def time_reference(model, entry, protocol, images, warm, size, device, precision="fp32") -> dict:
    torch.backends.cudnn.benchmark = False  # upstream's test.py leaves it off

    def reference(x):
        return reference_predict(model, x, protocol, entry.num_classes, protocol.flip_pairs, device, output_size=size)

    switches, ran = _arithmetic(precision, device)
    with switches:
        return {"precision": precision, "arithmetic": ran, **_time_images(reference, warm, images, device)}


def time_setting(setting: Setting, model, entry, protocol, images, warm, size, device) -> dict:
    torch.backends.cudnn.benchmark = setting.cudnn_benchmark and device.type == "cuda"
    predictor = Predictor(model, protocol, entry.num_classes, protocol.flip_pairs, device,
                          max_batch=setting.max_batch, precision=setting.precision,
                          channels_last=setting.channels_last)
    switches, ran = _arithmetic(setting.precision, device)
    with switches:
        timed = _time_images(lambda x: predictor(x, size), warm, images, device)
    torch.backends.cudnn.benchmark = False
    return {"setting": setting.name, "channels_last": setting.channels_last,
            "cudnn_benchmark": setting.cudnn_benchmark, "precision": setting.precision, "arithmetic": ran,
            "max_batch_asked": setting.max_batch, "max_batch_after": predictor.max_batch,
            "oom_halvings": predictor.oom_retries, **timed}


def run_case(case: Case, device: torch.device, tiny: bool, settings: list[str], say) -> dict:
    entry = load_manifest().get(case.model_id)
    protocol = entry.protocols[case.protocol]
    height, width = case.tiny_size if tiny else case.size
    reference_model = fill_model(build_segmentor(entry.id)).eval().to(device)
    # a copy: the Predictor converts its model's layout in place; the reference runs NCHW
    engine_model = copy.deepcopy(reference_model)
    generator = torch.Generator().manual_seed(0)
    count = 1 if tiny else case.images  # tiny: a check of the script, one timed image
    images = [torch.randn(3, height, width, generator=generator) for _ in range(count)]
    warm = torch.randn(3, height, width, generator=generator)  # same size: cuDNN's choices, allocator
    references = {}
    for precision in REFERENCES:
        references[precision] = time_reference(reference_model, entry, protocol, images, warm, (height, width),
                                               device, precision)
        row = references[precision]
        say(f"{case.name:<10} loop {precision:<8} {row['seconds_per_image']:.3f} s/img"
            f" (first {row['first_image_seconds']:.2f} s, {_gib(row['peak_memory_bytes'])}, {row['arithmetic']})")
    fp32_loop = references["fp32"]
    rows = []
    for name in settings:
        row = time_setting(SETTINGS[name], engine_model, entry, protocol, images, warm, (height, width), device)
        rows.append(_compared(row, fp32_loop, references["tf32"]))
        say(format_row(case.name, row))
    references["tf32"].update(_agreement(references["tf32"]["scores"], fp32_loop["scores"]))
    for row in references.values():
        row.pop("scores")
    return {"case": case.name, "model_id": entry.id, "protocol": case.protocol, "mode": protocol.mode,
            "scales": protocol.scales, "size": [height, width], "images": count,
            "reference": references["fp32"], "reference_tf32": references["tf32"], "settings": rows}


def _compared(row: dict, fp32_loop: dict, tf32_loop: dict) -> dict:
    """Agreement with upstream's fp32 loop and the ratios to both loops."""
    row.update(_agreement(row.pop("scores"), fp32_loop["scores"]))
    row["speedup"] = fp32_loop["seconds_per_image"] / row["seconds_per_image"]
    row["speedup_vs_tf32_loop"] = tf32_loop["seconds_per_image"] / row["seconds_per_image"]
    return row


def run_e2e(device: torch.device, tiny: bool, count: int, output: Path, say, label: str = "e2e") -> dict:
    """A whole evaluation through the engine (`run_job`, its defaults) and the reference loop on
    the same images: MCIBI R-50 ADE20k ms+flip, images of four sizes."""
    from repro.datasets import DATASETS
    from repro.engine import EngineOptions, EvalJob, run_job

    entry = load_manifest().get("mcibi_deeplabv3_r50_ade20k")
    protocol = entry.protocols["ms+flip"]
    sizes = [(64, 85), (64, 64), (85, 64)] if tiny else [(512, 683), (512, 512), (683, 512), (512, 910)]
    if tiny:  # the test resize would bring the images back to 512 (short side); one scale, flipped
        resize = protocol.resize.model_copy(update={"output_size": [256, 64]})
        protocol = protocol.model_copy(update={"resize": resize, "scales": [1.0]})
    dataset = _synthetic_split(entry.num_classes, [sizes[i % len(sizes)] for i in range(count)])
    model = fill_model(build_segmentor(entry.id)).eval()
    job = EvalJob(model_id=entry.id, protocol_name="ms+flip", protocol=protocol, dataset=dataset,
                  dataset_name=entry.dataset, split="val", data_root="<synthetic>",
                  class_names=DATASETS[entry.dataset].class_names, build_model=lambda: copy.deepcopy(model),
                  checkpoint_sha256="gpu_check")
    options = EngineOptions(device=str(device), results=output, resume=False)
    start = time.perf_counter()
    result = run_job(job, options)
    engine_seconds = time.perf_counter() - start
    reference_seconds, reference_miou = _reference_miou(model, entry, protocol, dataset, device)
    row = {"label": label, "images": count, "sizes": sizes,
           "engine_whole_seconds": engine_seconds, "reference_loop_seconds": reference_seconds,
           "engine_miou": result.miou, "reference_miou": reference_miou,
           "result_perf": {k: getattr(result, k, None) for k in (
               "images_per_second", "seconds_per_image", "peak_memory_bytes", "peak_memory_kind",
               "flops_per_image", "device_peak_flops", "peak_flops_fraction", "engine")}}
    say(f"{label}: engine {engine_seconds:.1f} s (result: {row['result_perf']['seconds_per_image']}"
        f" s/img) vs reference loop {reference_seconds:.1f} s over {count} images;"
        f" mIoU {row['engine_miou']:.4f} vs {row['reference_miou']:.4f}")
    return row


def _synthetic_split(num_classes: int, sizes):
    from repro.selftest import SyntheticSplit

    return SyntheticSplit(num_classes, sizes)


def _reference_miou(model, entry, protocol, dataset, device) -> tuple[float, float]:
    """(seconds, mIoU percent) of upstream's loop over `dataset`, in fp32 (TF32 off)."""
    from repro.inference.transforms import test_transform
    from repro.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(entry.num_classes)
    reference_model = copy.deepcopy(model).to(device)
    start = time.perf_counter()
    with arithmetic("fp32", device):
        for index in range(len(dataset)):
            sample = dataset[index]
            scores = reference_predict(reference_model, test_transform(sample.image, protocol), protocol,
                                       entry.num_classes, protocol.flip_pairs, device, output_size=sample.label.shape)
            matrix.update(scores.argmax(0), torch.from_numpy(sample.label))
    return time.perf_counter() - start, matrix.scores().miou * 100.0


LOADER_MODELS = ("memorynetv2_fcn_resnet50os8_lip", "memorynetv2_ppm_resnet50os8_lip")


def run_cli_two_models(device: torch.device, tiny: bool, folder: Path, say) -> dict:
    """`repro eval` of two models in one command (the thread loader, then the next model): a
    synthetic LIP split and filled checkpoints imported with `repro fetch --from`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_data import make_lip

    env = {**os.environ, "REPRO_HOME": str(folder / "home"), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if tiny:  # the two rows with their single protocol at 64x48 (a CPU check of this step)
        env["REPRO_MANIFEST"] = str(_tiny_manifest(folder / "zoo.yaml", LOADER_MODELS))
    make_lip(folder / "data" / "LIP", n_val=2 if tiny else 8, size=(48, 32) if tiny else (256, 192))
    for model_id in LOADER_MODELS:
        path = folder / f"{model_id}.pth"
        torch.save({"model": fill_model(build_segmentor(model_id)).state_dict()}, path)
        _repro(["fetch", model_id, "--from", str(path)], env, 300)
    start = time.perf_counter()
    done = _repro(["eval", *LOADER_MODELS, "--protocol", "single", "--data-root", str(folder / "data"), "--allow-subset",
                   "--device", str(device), "--results", str(folder / "results")], env, 300)
    results = sorted(p.name for p in (folder / "results").glob("*.json"))
    row = {"models": list(LOADER_MODELS), "exit_code": done.returncode, "seconds": time.perf_counter() - start,
           "result_files": results, "output_tail": (done.stdout + done.stderr)[-1500:]}
    say(f"repro eval of {len(LOADER_MODELS)} models in one command: exit {done.returncode},"
        f" {row['seconds']:.1f} s, {len(results)} result file(s)")
    return row


def _tiny_manifest(path: Path, model_ids) -> Path:
    import yaml

    from repro.manifest import DEFAULT_PATH

    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["models"] = [e for e in raw["models"] if e["id"] in model_ids]
    for entry in raw["models"]:
        entry["protocols"]["single"]["resize"] = {"output_size": [64, 48], "keep_ratio": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _repro(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "repro", *args], env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as stopped:  # the hang this step looks for
        return subprocess.CompletedProcess(stopped.cmd, 124, str(stopped.stdout or ""), f"timed out after {timeout} s")


def _gib(value) -> str:
    return "n/a" if value is None else f"{value / 2**30:.1f} GiB"


def format_row(case: str, row: dict) -> str:
    return (f"{case:<10} {row['setting']:<9} {row['seconds_per_image']:.3f} s/img x{row['speedup']:.2f}"
            f" (x{row['speedup_vs_tf32_loop']:.2f} vs the TF32 loop; first {row['first_image_seconds']:.2f} s,"
            f" {_gib(row['peak_memory_bytes'])}, batch {row['max_batch_asked']}->{row['max_batch_after']},"
            f" {row['arithmetic']}) argmax {row['argmax_agreement_percent']:.4f}% max|d| {row['max_abs_score_diff']:.1e}")


def _selftest(device: str, json_path: Path | None) -> int:
    from repro import selftest

    report = selftest.run_selftest(device, say=lambda line: print(line, flush=True))
    print(f"selftest {'passed' if report.passed else 'FAILED'} on {report.device}, {report.seconds:.0f} s")
    print(f"recorded: {selftest.record(report)}")
    if json_path:
        json_path.write_text(report.to_json())
    return 0 if report.passed else 1


def _cap_memory(device: torch.device, gib: float | None) -> float | None:
    """Cap the caching allocator at `gib` (a smaller GPU's budget); the fraction set, or None."""
    if device.type != "cuda" or not gib:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="small images (a CPU check of this script)")
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--settings", nargs="+", default=None, choices=list(SETTINGS),
                        help="engine settings to time (default: each case's list)")
    parser.add_argument("--memory-cap-gib", type=float, default=24.0, help="allocator cap on the GPU (0: none)")
    parser.add_argument("--e2e", type=int, default=0, metavar="N",
                        help="also N images through run_job, twice in this process (0: skip)")
    parser.add_argument("--loader", action="store_true", help="also `repro eval` of two models in one command")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--selftest-only", action="store_true",
                        help="run repro's selftest through the Python API (where the CLI cannot load) and exit")
    args = parser.parse_args(argv)
    if args.selftest_only:
        return _selftest(args.device, args.json)
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    report = {"environment": environment(device), "tiny": args.tiny,
              "tf32_available": tf32_unavailable(device) is None,
              "memory_cap_gib": args.memory_cap_gib if device.type == "cuda" else None,
              "memory_cap_fraction": _cap_memory(device, args.memory_cap_gib), "cases": [], "e2e": [],
              "loader_cli": None}
    print(f"gpu_check on {report['environment']['device']}, torch {torch.__version__},"
          f" allocator cap {report['memory_cap_gib']} GiB; TF32 {'available' if report['tf32_available'] else 'n/a'}",
          flush=True)

    def save() -> None:  # after each step, so a timeout still leaves the finished ones
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")

    say = lambda line: print(line, flush=True)
    with tempfile.TemporaryDirectory() as output:
        for number in range(1, 3) if args.e2e else ():  # the second run_job of a process hung once
            report["e2e"].append(run_e2e(device, args.tiny, args.e2e, Path(output) / f"e2e{number}", say,
                                         label=f"e2e run {number} of 2"))
            save()
        if args.loader:
            report["loader_cli"] = run_cli_two_models(device, args.tiny, Path(output) / "cli", say)
            save()
        for case in (c for c in CASES if c.name in args.cases):
            report["cases"].append(run_case(case, device, args.tiny, args.settings or list(case.settings), say))
            save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
