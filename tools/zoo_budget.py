"""The README's budget table: the whole zoo (every documented number) on one A100 / one H100 and on
eight of them (torchrun shares the images), in fp32 and in TF32.

    python tools/zoo_budget.py > /tmp/budget.md

Estimates from repro.planning.plan's FLOP table and repro.perf's peaks x achieved shares (repro.planning.budget),
for the official split sizes and typical image sizes (no dataset needs to be on disk). The same
numbers, one device at a time: `repro eval --all --dry-run --assume-device a100`.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from repro.planning.budget import assumed_device, device_seconds, plan_flops
from repro.perf import FP32_ACHIEVED_SHARE, TF32_ACHIEVED_SHARE
from repro.planning.plan import build_plan, format_duration

COLUMNS = (("A100", "a100", 1), ("H100", "h100", 1), ("8x A100", "a100", 8), ("8x H100", "h100", 8))


@dataclass
class ZooRow:
    name: str  # a dataset, or "all"
    runs: int
    images: int  # summed over the runs
    flops: float


def zoo_rows(data_root: Path) -> list[ZooRow]:
    """Per dataset (and in all) the runs of `repro eval --all`, their images and FLOPs."""
    from repro.engine.options import EngineOptions
    from repro.manifest import load_manifest

    manifest = load_manifest()
    runs = [SimpleNamespace(model_id=e.id, protocol=p) for e in manifest.entries for p in e.protocols]
    plan = build_plan(manifest, runs, [], "documented", assumed_device("a100"), EngineOptions(data_root=data_root),
                      results_on_disk=False)  # every run of the zoo, whatever was measured here
    rows = []
    for name in [*dict.fromkeys(row.dataset for row in plan.rows), "all"]:
        part = SimpleNamespace(rows=[r for r in plan.rows if name in ("all", r.dataset)])
        rows.append(ZooRow(name, len(part.rows), sum(r.images or 0 for r in part.rows), plan_flops(part) or 0.0))
    return rows


def render_table(rows: list[ZooRow]) -> str:
    head = "| dataset | runs | images | " + " | ".join(f"{label} fp32 / TF32" for label, _, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (3 + len(COLUMNS))]
    for row in rows:
        cells = []
        for _, name, gpus in COLUMNS:
            device = assumed_device(name)
            fp32, tf32 = (device_seconds(row.flops, device, p, gpus) for p in ("fp32", "tf32"))
            cells.append(f"{format_duration(fp32)} / {format_duration(tf32)}")
        name = f"**{row.name}**" if row.name == "all" else row.name
        lines.append(f"| {name} | {row.runs} | {row.images:,} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Estimates: forward FLOPs (tools/cost_table.py) at fp32 {FP32_ACHIEVED_SHARE:.2f} of the CUDA-core "
                 f"peak (measured on an H200) and TF32 {TF32_ACHIEVED_SHARE:.2f} of the tensor-core peak (assumed, "
                 "not yet measured); loading, resizes and the metric are not counted; 8 GPUs = the time / 8.")
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as empty:  # no dataset here: official counts, typical sizes
        sys.stdout.write(render_table(zoo_rows(Path(empty))))


if __name__ == "__main__":
    main()
