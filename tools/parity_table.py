"""Print the parity of every upstream config with the fixtures of tests/fixtures/parity/.

For each config: the bundled segmentor (variant "upstream-head") filled per FILL.md through
`load_checkpoint`, its max |ours - ref| / max |ref| against `all/` (float32) and `all64/`
(float64), and the seconds it took (build + fill + both forwards, this machine); then the four
HRNet configs with variant "training-era" against `era/` and `era64/`.

    python tools/parity_table.py [--match SUBSTRING] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from parity_support import FIXTURE_SETS, compare, filled_model, fixture_configs  # noqa: E402

ROWS = [("all", "all64")] + [("era", "era64")]


def measure(config: str, pair: tuple[str, str]) -> tuple[str, float, float, bool, float]:
    start = time.perf_counter()
    model = filled_model(config, FIXTURE_SETS[pair[0]][0])
    single, double = (compare(model, config, name) for name in pair)
    seconds = time.perf_counter() - start
    return FIXTURE_SETS[pair[0]][0], single.relative, double.relative, single.ok and double.ok, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default="", help="only configs whose name contains this")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    failures, worst = 0, {32: 0.0, 64: 0.0}
    for pair in ROWS:
        print(f"\nvariant {FIXTURE_SETS[pair[0]][0]} vs {pair[0]}/ and {pair[1]}/ "
              f"(max|ours - ref| / max|ref|; seconds)")
        print(f"{'config':<51} {'f32 rel':>7} {'f64 rel':>7} {'s':>5}")
        for config in fixture_configs(pair[0]):
            if args.match not in config:
                continue
            _, single, double, ok, seconds = measure(config, pair)
            worst = {32: max(worst[32], single), 64: max(worst[64], double)}
            failures += not ok
            flag = "" if ok else " FAIL"
            print(f"{config:<51} {single:7.1e} {double:7.1e} {seconds:5.1f}{flag}", flush=True)
    print(f"\nworst: float32 {worst[32]:.1e} (bar 1e-4), float64 {worst[64]:.1e} (bar 1e-9); {failures} failing")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
