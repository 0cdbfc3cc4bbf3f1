"""Peak memory per protocol kind: repro's default batching, `--max-batch 1`, and upstream's loop.

For each row (a manifest id and protocol; by default one whole, one ms+flip and one slide row) it
runs one image of the dataset's typical size through the row's real test protocol, with the
zoo architecture filled deterministically (`repro.models.fill`), in a fresh process per mode
(a process's peak resident memory only grows):

  * `repro default`: `Predictor` as `repro eval` builds it (at most 4 inputs per forward, and
    their pixels capped as the device needs: on a CPU, by the image's largest single input);
  * `repro --max-batch 1`: one input per forward;
  * `repro uncapped`: the batching before the pixel cap (4 inputs per forward whatever their
    size; only with `--modes`, to show what the cap saves);
  * `upstream loop`: `repro.inference.reference.reference_predict`, the in-repo step-by-step
    transcription of upstream's test loop (one input at a time, outputs kept on the CPU and
    resized together at the end). It stands in for upstream's own code, which this script does
    not run (benchmarks/vs_upstream.py runs upstream's Tester, for time and mIoU).

It prints the peak resident memory of the process while the images run (model, weights and
Python included; on a GPU also `torch.cuda.max_memory_allocated`), its ratio to the upstream
loop's, the estimate `repro eval --dry-run` shows (`repro.inference.footprint`) against the
measurement, the seconds per image and the argmax agreement with the upstream loop.

    python benchmarks/memory.py                 # the default rows: about 6 min on 2 CPU cores
    python benchmarks/memory.py --rows mcibi_deeplabv3_r50_ade20k:ms+flip --images 2
    python benchmarks/memory.py --device cuda --json figures.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ROWS = (
    "mcibi_deeplabv3_r50_ade20k:single",  # whole
    "mcibi_deeplabv3_r50_ade20k:ms+flip",  # whole, six scales, flip (issue 25's case)
    "memorynetv2_upernet_resnet101os8_pascalcontext59:single",  # slide
)
# mode -> Predictor keyword arguments (None: the upstream loop)
MODES: dict[str, dict | None] = {
    "repro default": {},
    "repro --max-batch 1": {"max_batch": 1},
    "repro uncapped": {"batch_pixels": None},
    "upstream loop": None,
}
DEFAULT_MODES = ("repro default", "repro --max-batch 1", "upstream loop")
GIB = 2**30


# ---------------------------------------------------------------------------------------------
# One measurement, in its own process


def _images(entry, protocol, count: int):
    """`count` synthetic images of the dataset's typical size through the row's test transform."""
    import numpy as np

    from repro.inference.transforms import test_transform
    from repro.datasets import get_spec

    height, width = get_spec(entry.dataset).typical_image_size
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(count)]
    return [test_transform(image, protocol) for image in originals], (height, width)


def measure(row: str, mode: str, device_name: str, images: int, argmax_file: Path) -> dict:
    """Run `images` images of `row` in `mode`; the peak memory while they run."""
    import numpy as np
    import torch

    from repro.inference.predictor import Predictor
    from repro.inference.reference import reference_predict
    from repro.manifest import load_manifest
    from repro.models import build_segmentor, fill_model
    from repro.perf import process_peak_rss_bytes, process_rss_bytes, reset_peak_rss

    model_id, protocol_name = row.split(":")
    entry = load_manifest().get(model_id)
    protocol = entry.protocols[protocol_name]
    device = torch.device(device_name)
    model = fill_model(build_segmentor(entry.id)).eval().to(device)
    inputs, size = _images(entry, protocol, images)
    kwargs = MODES[mode]
    if kwargs is None:
        def run(image):
            return reference_predict(model, image, protocol, entry.num_classes, device=device, output_size=size)
    else:
        predictor = Predictor(model, protocol, entry.num_classes, device=device, **kwargs)
        run = lambda image: predictor(image, size)  # noqa: E731
    ready = process_rss_bytes()
    reset = reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    predictions = []
    with torch.inference_mode():
        for image in inputs:
            predictions.append(run(image).argmax(0).cpu().numpy())
    seconds = (time.perf_counter() - start) / images
    np.save(argmax_file, np.stack(predictions))
    return {
        "row": row, "mode": mode, "device": str(device), "image": list(inputs[0].shape[-2:]),
        "ready_rss": ready, "peak_rss": process_peak_rss_bytes() if reset else None,
        "peak_cuda": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "seconds_per_image": seconds,
        "batching": predictor.batching() if kwargs is not None else None,
    }


# ---------------------------------------------------------------------------------------------
# The driver: one process per (row, mode), then the table


def run_child(row: str, mode: str, args, work: Path) -> dict:
    argmax = work / f"{row.replace(':', '__')}__{mode.replace(' ', '_')}.npy"
    command = [sys.executable, __file__, "--child", row, mode, str(argmax), "--device", args.device,
               "--images", str(args.images)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{row} [{mode}] failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["argmax_file"] = str(argmax)
    return figures


def estimate(row: str, mode: str, device_type: str) -> int | None:
    """What `repro eval --dry-run` expects for a repro mode (None: the upstream loop, uncapped)."""
    from repro.inference.footprint import estimate_peak, footprint_of
    from repro.manifest import load_manifest
    from repro.datasets import get_spec

    kwargs = MODES[mode]
    if kwargs is None or "batch_pixels" in kwargs:
        return None
    model_id, protocol_name = row.split(":")
    entry = load_manifest().get(model_id)
    footprint = footprint_of(entry.upstream_config)
    if footprint is None:
        return None
    return estimate_peak(footprint, entry.protocols[protocol_name], get_spec(entry.dataset).typical_image_size,
                         entry.num_classes, device_type, max_batch=kwargs.get("max_batch", 4)).total


def agreement(figures: dict, yardstick: dict | None) -> str:
    import numpy as np

    if yardstick is None or figures is yardstick:
        return "-"
    ours, theirs = np.load(figures["argmax_file"]), np.load(yardstick["argmax_file"])
    return f"{100 * float((ours == theirs).mean()):.4f}%"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def print_row(row: str, measured: list[dict], device_type: str) -> None:
    """One row's modes: the peak (host RSS, and the GPU's allocated peak on a GPU), its ratio to
    the upstream loop's, the estimate and how close it is, seconds per image, argmax agreement."""
    from repro.manifest import load_manifest

    model_id, protocol_name = row.split(":")
    protocol = load_manifest().get(model_id).protocols[protocol_name]
    image = "x".join(str(v) for v in measured[0]["image"])
    kind = f"{protocol.mode}, {len(protocol.scales)} scale(s){', flip' if protocol.flip else ''}"
    print(f"{model_id} {protocol_name} ({kind}; input {image})")
    cuda = device_type == "cuda"
    key = "peak_cuda" if cuda else "peak_rss"
    yardstick = next((m for m in measured if m["mode"] == "upstream loop"), None)
    print(f"  {'mode':<20} {'peak GiB':>8} {'x loop':>6} {'estimate':>13} {'s/img':>6}  argmax = loop"
          + ("  host GiB" if cuda else ""))
    for figures in measured:
        ratio = f"{figures[key] / yardstick[key]:.2f}" if yardstick and figures[key] and yardstick[key] else "-"
        expected = estimate(row, figures["mode"], device_type)
        close = f"{_gib(expected)} ({100 * expected / figures[key]:.0f}%)" if expected and figures[key] else "-"
        host = f"  {_gib(figures['peak_rss'])}" if cuda else ""
        print(f"  {figures['mode']:<20} {_gib(figures[key]):>8} {ratio:>6} {close:>13} "
              f"{figures['seconds_per_image']:>6.1f}  {agreement(figures, yardstick)}{host}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), metavar="ID:PROTOCOL")
    parser.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=list(MODES))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--images", type=int, default=1, help="images per measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("ROW", "MODE", "ARGMAX_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row, mode, argmax = args.child
        print(json.dumps(measure(row, mode, args.device, args.images, Path(argmax))))
        return 0
    device_type = args.device.split(":")[0]
    what = "GPU allocated" if device_type == "cuda" else "host resident"
    print(f"peak {what} memory while {args.images} image(s) run, one process per line;\n"
          "loop = upstream's loop as transcribed in repro.inference.reference", flush=True)
    everything = []
    with tempfile.TemporaryDirectory(prefix="repro-memory-") as work:
        for row in args.rows:
            measured = [run_child(row, mode, args, Path(work)) for mode in args.modes]
            print_row(row, measured, device_type)
            everything += measured
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
