"""Evaluation speed: repro's batched inference engine vs a plain upstream-shaped test loop.

For one bundled model (weights from the deterministic fill, so no download is needed) and
synthetic normalised inputs, measures images/s of each requested protocol of the model's manifest
row with
  * `repro.inference.Predictor` (crops and flips batched on the device, final resize on the device);
  * `repro.inference.reference_predict` (upstream's loop: one crop at a time, outputs moved to the
    CPU and resized there, `sum(list) / len(list)`),
prints the speed ratio, and checks that both give the same predictions (fraction of pixels whose
argmax agrees; max abs difference of the averaged scores).

    python benchmarks/eval_speed.py --model memorynetv2_aspp_resnet101os8_cityscapes --device cuda
    python benchmarks/eval_speed.py --model memorynetv2_ppm_resnet50os8_lip --device cpu \
        --height 96 --width 128 --images 2 --protocols single flip

Sizes are those of the test-transformed image (e.g. Cityscapes 1024x2048); the original size
equals it unless --orig-height/--orig-width say otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro.inference.predictor import Predictor  # noqa: E402
from repro.inference.reference import reference_predict
from repro.manifest import PROTOCOL_NAMES, load_manifest  # noqa: E402
from repro.models import build_segmentor, fill_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, images, device) -> tuple[float, list[torch.Tensor]]:
    """Seconds for all images (after one warm-up call) and each image's argmax map (on the CPU)."""
    fn(images[0])
    _sync(device)
    predictions = []
    start = time.perf_counter()
    for image in images:
        predictions.append(fn(image).argmax(0).cpu())  # what the engine keeps per image
    _sync(device)
    return time.perf_counter() - start, predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="memorynetv2_aspp_resnet50os8_cityscapes", help="manifest id or alias")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--protocols", nargs="+", default=["single", "ms+flip"], choices=PROTOCOL_NAMES)
    parser.add_argument("--height", type=int, default=None, help="transformed image height (default: dataset-typical)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--orig-height", type=int, default=None, help="original image height (default = --height)")
    parser.add_argument("--orig-width", type=int, default=None)
    parser.add_argument("--images", type=int, default=3, help="timed images per protocol (after one warm-up)")
    parser.add_argument("--max-batch", type=int, default=4, help="engine: crops/images per forward")
    parser.add_argument("--batch-pixels", default="auto", choices=["auto", "none"],
                        help="engine: auto (on a CPU no forward holds more pixels than the image's largest "
                        "input; the engine's default) or none (max-batch inputs whatever their size)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="engine precision (the reference is always fp32)")
    parser.add_argument("--skip-reference", action="store_true", help="time the engine only")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = parser.parse_args(argv)

    torch.backends.cuda.matmul.allow_tf32 = False  # as upstream's test script
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    entry = load_manifest().get(args.model)
    typical = {"cityscapes": (1024, 2048), "lip": (473, 473)}.get(entry.dataset, (512, 683))
    height, width = args.height or typical[0], args.width or typical[1]
    out_size = (args.orig_height or height, args.orig_width or width)

    model = fill_model(build_segmentor(entry.id)).eval().to(device)
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(3, height, width, generator=generator) for _ in range(args.images)]
    print(f"model {entry.id} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"input {height}x{width}, output {out_size[0]}x{out_size[1]}, {args.images} images, torch {torch.__version__}")

    rows = []
    for name in args.protocols:
        if name not in entry.protocols:
            print(f"  {name}: the row has no such protocol, skipped")
            continue
        protocol = entry.protocols[name]
        pairs = protocol.flip_pairs
        # a copy: the Predictor may convert its model to channels_last in place (CPU), and the
        # reference loop must run upstream's NCHW layout
        predictor = Predictor(copy.deepcopy(model), protocol, entry.num_classes, pairs, device,
                              max_batch=args.max_batch, precision=args.precision,
                              batch_pixels=None if args.batch_pixels == "none" else args.batch_pixels)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        engine_s, engine_out = _time(lambda x: predictor(x, out_size), images, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        row = {
            "protocol": name, "mode": protocol.mode, "scales": protocol.scales, "flip": protocol.flip,
            "engine_images_per_s": args.images / engine_s, "engine_peak_gib": peak,
            "max_batch_after_oom_backoff": predictor.max_batch,
        }
        if not args.skip_reference:
            ref_s, ref_out = _time(
                lambda x: reference_predict(model, x, protocol, entry.num_classes, pairs, device, output_size=out_size),
                images, device,
            )
            agree = sum(int((a == b).sum()) for a, b in zip(engine_out, ref_out))
            total = sum(a.numel() for a in engine_out)
            # scores compared on the first image, outside the timing
            engine_scores = predictor(images[0], out_size).float().cpu()
            ref_scores = reference_predict(model, images[0], protocol, entry.num_classes, pairs, device, output_size=out_size)
            row.update({
                "reference_images_per_s": args.images / ref_s,
                "speedup": ref_s / engine_s,
                "argmax_agreement": agree / total,
                "argmax_differing_pixels": total - agree,
                "max_abs_score_diff": float((engine_scores - ref_scores).abs().max()),
            })
        rows.append(row)
        text = f"  {name:8s} engine {row['engine_images_per_s']:.3f} img/s"
        if peak is not None:
            text += f" (peak {peak:.2f} GiB)"
        if "speedup" in row:
            text += (f" | upstream-shaped loop {row['reference_images_per_s']:.3f} img/s | speed-up x{row['speedup']:.2f}"
                     f" | argmax equal on {100 * row['argmax_agreement']:.5f}% of pixels"
                     f" ({row['argmax_differing_pixels']} differ), max |score diff| {row['max_abs_score_diff']:.3g}")
        print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": entry.id, "device": str(device), "size": [height, width],
                                         "rows": rows}, indent=2))
    # identical predictions are the point: fail loudly when they are not (fp32 only)
    if args.precision == "fp32" and any(r.get("argmax_differing_pixels", 0) for r in rows):
        print("WARNING: engine and upstream-shaped loop disagree on some pixels (float-rounding ties?)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
