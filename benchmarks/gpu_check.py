"""GPU speed and agreement: repro's batched Predictor vs `reference_predict` (upstream's loop).

Three real-size cases, weights from the deterministic fill, fp32 with TF32 off:

* ade20k:     MCIBI R-50 ADE20k, ms+flip (whole, six scales), one 512x683 image
* cityscapes: MCIBI++ ASPP R-101 Cityscapes, ms+flip slide, one 1024x2048 image
* swin:       MCIBI++ UPerNet Swin-L ADE20k, ms+flip slide 640x640 windows, one 640x853 image

For each: seconds per image of both paths, their ratio, argmax agreement (% of pixels), max
|score difference| and peak device memory of each path (torch.cuda.max_memory_allocated). Prints
one line per case and writes everything as JSON. `--tiny` shrinks the images (for a CPU check of
the script itself; the models stay full size).

    python benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --tiny
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.inference import Predictor, reference_predict  # noqa: E402
from repro.manifest import load_manifest  # noqa: E402
from repro.models import build_segmentor, fill_model  # noqa: E402
from repro.selftest import strict_fp32  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    model_id: str
    protocol: str
    size: tuple[int, int]  # test-transformed (= original) image, height x width
    tiny_size: tuple[int, int]


CASES = (
    Case("ade20k", "mcibi_deeplabv3_r50_ade20k", "ms+flip", (512, 683), (64, 85)),
    Case("cityscapes", "memorynetv2_aspp_resnet101os8_cityscapes", "ms+flip", (1024, 2048), (96, 192)),
    Case("swin", "memorynetv2_upernet_swinlarge_ade20k", "ms+flip", (640, 853), (64, 85)),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(fn, images, device) -> dict:
    """Seconds per image, peak memory and the argmax maps of `fn` over `images`."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    scores = [fn(image).float().cpu() for image in images]
    _sync(device)
    seconds = (time.perf_counter() - start) / len(images)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"seconds_per_image": seconds, "peak_memory_bytes": peak, "scores": scores}


def run_case(case: Case, device: torch.device, tiny: bool, count: int, max_batch: int) -> dict:
    entry = load_manifest().get(case.model_id)
    protocol = entry.protocols[case.protocol]
    height, width = case.tiny_size if tiny else case.size
    model = fill_model(build_segmentor(entry.id)).eval().to(device)
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(3, height, width, generator=generator) for _ in range(count)]
    # a copy: on the CPU the Predictor converts its model to channels_last in place, and the
    # reference loop must run upstream's NCHW layout
    predictor = Predictor(copy.deepcopy(model), protocol, entry.num_classes, protocol.flip_pairs, device,
                          max_batch=max_batch)

    def engine(x):
        return predictor(x, (height, width))

    def reference(x):
        return reference_predict(model, x, protocol, entry.num_classes, protocol.flip_pairs, device,
                                 output_size=(height, width))

    warm = torch.randn(3, max(32, height // 4), max(32, width // 4), generator=generator)
    engine(warm), reference(warm)  # CUDA context, cuDNN handles, allocator: outside the timing
    ours, theirs = _measure(engine, images, device), _measure(reference, images, device)
    agree = sum(int((a.argmax(0) == b.argmax(0)).sum()) for a, b in zip(ours["scores"], theirs["scores"]))
    pixels = sum(a[0].numel() for a in ours["scores"])
    return {
        "case": case.name, "model_id": entry.id, "protocol": case.protocol, "mode": protocol.mode,
        "scales": protocol.scales, "size": [height, width], "images": count, "max_batch": predictor.max_batch,
        "engine_seconds_per_image": ours["seconds_per_image"],
        "reference_seconds_per_image": theirs["seconds_per_image"],
        "speedup": theirs["seconds_per_image"] / ours["seconds_per_image"],
        "argmax_agreement_percent": 100.0 * agree / pixels, "argmax_differing_pixels": pixels - agree,
        "max_abs_score_diff": max(float((a - b).abs().max()) for a, b in zip(ours["scores"], theirs["scores"])),
        "engine_peak_memory_bytes": ours["peak_memory_bytes"],
        "reference_peak_memory_bytes": theirs["peak_memory_bytes"],
    }


def _gib(value) -> str:
    return "n/a" if value is None else f"{value / 2**30:.1f} GiB"


def format_row(row: dict) -> str:
    return (f"{row['case']:<10} {row['size'][0]}x{row['size'][1]} engine {row['engine_seconds_per_image']:.2f} s/img"
            f" ({_gib(row['engine_peak_memory_bytes'])}), reference {row['reference_seconds_per_image']:.2f} s/img"
            f" ({_gib(row['reference_peak_memory_bytes'])}), x{row['speedup']:.2f},"
            f" argmax {row['argmax_agreement_percent']:.4f}%")


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}


def _selftest(device: str, json_path: Path | None) -> int:
    from repro import selftest

    report = selftest.run_selftest(device, say=lambda line: print(line, flush=True))
    print(f"selftest {'passed' if report.passed else 'FAILED'} on {report.device}, {report.seconds:.0f} s")
    print(f"recorded: {selftest.record(report)}")
    if json_path:
        json_path.write_text(report.to_json())
    return 0 if report.passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="small images (a CPU check of this script)")
    parser.add_argument("--images", type=int, default=1, help="timed images per case")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES], choices=[c.name for c in CASES])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--selftest-only", action="store_true",
                        help="run repro's selftest through the Python API (where the CLI cannot load) and exit")
    args = parser.parse_args(argv)
    if args.selftest_only:
        return _selftest(args.device, args.json)
    device = torch.device(args.device)
    report = {"environment": environment(device), "tiny": args.tiny, "tf32": False, "precision": "fp32", "cases": []}
    print(f"gpu_check on {report['environment']['device']}, torch {torch.__version__}, fp32, TF32 off", flush=True)
    with strict_fp32():
        for case in (c for c in CASES if c.name in args.cases):
            row = run_case(case, device, args.tiny, args.images, args.max_batch)
            report["cases"].append(row)
            print(format_row(row), flush=True)
            if args.json:  # after each case, so a timeout still leaves the finished ones
                args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
