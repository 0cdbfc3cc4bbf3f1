"""Regenerate repro/plan.py's GFLOPS_512: forward-pass GFLOPs of every upstream config at 512x512.

Counts with torch's FlopCounterMode on a meta-device build (no weights, no compute): convolutions,
matmuls and attention, batch 1. MCIBI++'s test-time memory draw reads parameter values, which a
meta tensor has none of, so it is replaced by zeros of the same shape (its cost is negligible).

    python tools/cost_table.py > /tmp/table.txt   # then paste into repro/plan.py
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

import repro.models.memory as memory
from repro.manifest import load_manifest
from repro.models import build_architecture

SIDE = 512


def _zeros_draw(mean_std: torch.Tensor, channels: int) -> torch.Tensor:
    return torch.zeros(mean_std.shape[0], channels, device="cpu")


def forward_gflops(upstream_config: str, num_classes: int) -> float:
    with torch.device("meta"), torch.no_grad():
        model = build_architecture(upstream_config, num_classes)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, SIDE, SIDE))
    return counter.get_total_flops() / 1e9


def main() -> None:
    memory.draw_class_vectors = _zeros_draw  # meta tensors carry no values to draw from
    configs = {e.upstream_config: e.num_classes for e in load_manifest().entries}
    print(f"# forward GFLOPs at {SIDE}x{SIDE}, batch 1 (tools/cost_table.py)")
    print("GFLOPS_512 = {")
    for config in sorted(configs):
        print(f'    "{config}": {forward_gflops(config, configs[config]):.1f},')
    print("}")


if __name__ == "__main__":
    main()
