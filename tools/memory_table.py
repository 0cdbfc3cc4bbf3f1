"""Regenerate repro/inference/footprint.py's FOOTPRINTS (and HOST_BASE_BYTES): the activation
memory of every upstream config's forward as a function of the input's pixels.

Per config the network is built on the "meta" device (no weights, no arithmetic) and run at batch
1 under no_grad at the square sizes of `FOOTPRINT_SIDES`, watched by `LiveBytes`: a dispatch mode
that adds the bytes of every storage an operation creates (not a view of one of its inputs) and
subtracts them when the storage is freed, keeping the peak. Convolutions make the peak grow with
the pixels, the non-local attention of the MCIBI heads and ViT's global attention with their
square (a (p/64)^2 similarity matrix), and which part holds the peak changes with the size, so the
table keeps the peak at each size and `Footprint` interpolates; a non-square size checks it (the
`# worst fit` line). Tensors that oneDNN or cuDNN allocate inside a kernel are not seen:
benchmarks/memory.py compares the estimate with the peak a real run reaches. MCIBI++'s test-time
memory draw reads weight values, which meta tensors lack: it draws zeros of the same shape here
(as tools/cost_table.py does).

HOST_BASE_BYTES: the resident memory of a process that has imported what `repro eval` imports
before it builds a model (measured in a fresh process, this machine).

    python tools/memory_table.py > /tmp/footprints.txt   # ~5 min; paste into footprint.py
    python tools/memory_table.py --configs mcibi_deeplabv3_resnet50os8_ade20k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from repro.inference.footprint import FOOTPRINT_SIDES, Footprint

CHECK_SIZES = ((896, 1195), (473, 473))  # ADE20k's largest ms+flip input, LIP's input: where it is checked
MIB = 2**20


class LiveBytes(TorchDispatchMode):
    """The peak bytes of the storages operations create while the mode is on."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()  # one Python object per storage while it lives
            if id(storage) in inputs:
                continue  # a view or an in-place result
            inputs.add(id(storage))
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, storage.nbytes())
        return out


def forward_peak(model: torch.nn.Module, height: int, width: int) -> int:
    image = torch.empty(1, 3, height, width, device="meta")
    with torch.no_grad(), LiveBytes() as watch:
        model(image)
    return watch.peak


def _zeros_draw(mean_std: torch.Tensor, channels: int) -> torch.Tensor:
    return torch.zeros(mean_std.shape[0], channels, device=mean_std.device)


def measure_config(config: str, num_classes: int) -> tuple[Footprint, float]:
    """(the config's Footprint, its worst relative error at CHECK_SIZES)."""
    from repro.models import build_architecture

    with torch.device("meta"):
        model = build_architecture(config, num_classes).eval()
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    footprint = Footprint(weights / MIB, tuple(forward_peak(model, side, side) / MIB for side in FOOTPRINT_SIDES))
    errors = [abs(footprint.activations(h * w) - forward_peak(model, h, w)) / forward_peak(model, h, w)
              for h, w in CHECK_SIZES]
    return footprint, max(errors)


def measure_base() -> int:
    """Resident memory once what `repro eval` imports before it builds a model is loaded."""
    import cv2  # noqa: F401
    import numpy  # noqa: F401

    import repro.cli.app  # noqa: F401
    import repro.engine.run  # noqa: F401
    import repro.models  # noqa: F401
    from repro.perf import process_rss_bytes

    return process_rss_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", help="upstream configs (default: every one of the zoo)")
    parser.add_argument("--base", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.base:
        print(json.dumps(measure_base()))
        return
    import repro.models.memory as memory
    from repro.manifest import load_manifest

    memory.draw_class_vectors = _zeros_draw  # meta tensors carry no values to draw from
    classes = {e.upstream_config: e.num_classes for e in load_manifest().entries}
    base = subprocess.run([sys.executable, __file__, "--base"], capture_output=True, text=True, check=True)
    print(f"# tools/memory_table.py: MiB of weights, MiB of the forward's peak at {FOOTPRINT_SIDES} squared")
    print(f"HOST_BASE_BYTES = {json.loads(base.stdout)}")
    print("FOOTPRINTS: dict[str, Footprint] = {")
    worst = 0.0
    for config in sorted(args.configs or classes):
        footprint, error = measure_config(config, classes[config])
        worst = max(worst, error)
        peaks = ", ".join(f"{peak:.1f}" for peak in footprint.peaks_mib)
        print(f'    "{config}": Footprint({footprint.weights_mib:.1f}, ({peaks})),', flush=True)
    print("}")
    print(f"# worst fit at {' and '.join(f'{h}x{w}' for h, w in CHECK_SIZES)}: {100 * worst:.1f}% off the traced peak")


if __name__ == "__main__":
    main()
