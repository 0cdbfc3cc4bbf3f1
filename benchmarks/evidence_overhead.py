"""What recording the per-image evidence costs: one evaluation through the engine with and
without the evidence sink (`repro.engine.sinks.EvidenceSink`), on the CPU by default.

Prints the evaluation seconds of both runs and the time spent inside the evidence sink itself
(process + saved state + the sidecar), as a share of the run: the target is under 2%.
Inputs are synthetic ADE20k-sized images (512x683, 150 classes, some ignored pixels); the
network is a bundled model filled with deterministic weights (no download), or with
`--model tiny` a two-layer network (an upper bound on the share: the forward is nearly free).

    python benchmarks/evidence_overhead.py                      # MCIBI R-50 ADE20k, 2 images
    python benchmarks/evidence_overhead.py --model tiny --images 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import repro.engine.run as engine_run  # noqa: E402
from repro.datasets import DATASETS  # noqa: E402
from repro.datasets.base import Sample  # noqa: E402
from repro.engine import EngineOptions, EvalJob, run_job  # noqa: E402
from repro.engine.sinks import EvidenceSink  # noqa: E402
from repro.manifest import load_manifest  # noqa: E402

MODEL = "mcibi_deeplabv3_r50_ade20k"


class SyntheticADE:
    """ADE20k-sized random images and labels (150 classes, about 10% ignored pixels)."""

    def __init__(self, count: int, size: tuple[int, int] = (512, 683)):
        rng = np.random.default_rng(0)
        self.ids = [f"ADE_val_{i:08d}" for i in range(count)]
        self.images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]
        self.labels = [rng.integers(-15, 150, size).clip(-1).astype(np.int64) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.ids[i], self.images[i], self.labels[i], Path(f"{self.ids[i]}.jpg"))


def _network(name: str):
    if name == "tiny":
        return lambda: torch.nn.Conv2d(3, 150, 3, stride=8, padding=1).eval()
    from repro.models import build_segmentor, fill_model

    return lambda: fill_model(build_segmentor(name)).eval()


class TimedEvidence(EvidenceSink):
    """The evidence sink with a stopwatch around everything it does."""

    spent = 0.0

    def _timed(self, method, *args):
        began = time.perf_counter()
        try:
            return method(*args)
        finally:
            TimedEvidence.spent += time.perf_counter() - began

    def process(self, sample, prediction):
        return self._timed(super().process, sample, prediction)

    def state(self):
        return self._timed(super().state)

    def finish(self, finished):
        return self._timed(super().finish, finished)


def _run(dataset, network, with_evidence: bool, folder: Path, device: str) -> float:
    entry = load_manifest().get(MODEL)
    job = EvalJob(model_id=MODEL, protocol_name="single", protocol=entry.protocols["single"], dataset=dataset,
                  dataset_name="ade20k", split="val", data_root="<synthetic>",
                  class_names=DATASETS["ade20k"].class_names, build_model=network, checkpoint_sha256="bench")
    make_sinks = engine_run.make_sinks

    def sinks(run, collective, fresh):
        chosen = make_sinks(run, collective, fresh)
        if not with_evidence:
            return [s for s in chosen if not isinstance(s, EvidenceSink)]
        return [TimedEvidence(s.num_classes, s.confusion) if isinstance(s, EvidenceSink) else s for s in chosen]

    engine_run.make_sinks = sinks
    try:
        options = EngineOptions(device=device, results=folder, workers=0, resume=False, save_every=1)
        return run_job(job, options).seconds
    finally:
        engine_run.make_sinks = make_sinks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, help=f"a bundled model id, or 'tiny' (default {MODEL})")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dataset, network = SyntheticADE(args.images), _network(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        without = _run(dataset, network, False, Path(tmp) / "without", args.device)
        with_sink = _run(dataset, network, True, Path(tmp) / "with", args.device)
    share = TimedEvidence.spent / with_sink
    print(f"{args.model}, {args.images} ADE20k-sized images (150 classes), {args.device}, progress saved every image")
    print(f"  evaluation without the evidence sink: {without:8.2f} s ({without / args.images:.3f} s/img)")
    print(f"  evaluation with the evidence sink:    {with_sink:8.2f} s ({with_sink / args.images:.3f} s/img)")
    print(f"  inside the evidence sink:             {TimedEvidence.spent:8.3f} s "
          f"({1000 * TimedEvidence.spent / args.images:.1f} ms/img) = {share:.2%} of the run (target < 2%)")


if __name__ == "__main__":
    main()
