"""Fault injection over the real engine: N seeded scenarios, then the table of outcomes by fault and
by the option changed between the interrupted run and the one that resumes it.

    python benchmarks/fault_matrix.py --scenarios 200 --seed 0 [--real-kill]

A scenario (tests/fault_support.py): maybe an earlier complete result; a run interrupted at a
random point (an image, a sink, a progress save, the result write; an exception, SIGINT, a full
disk or a kill; or one of 2 ranks); options changed or not; the run again. Its outcome:
- equal: the result left on disk has the mIoU, evidence sidecar and prediction PNGs of one
  uninterrupted run under the final options;
- refused: the last run stopped with one error line, and every complete result is unchanged;
- wrong: anything else (must be 0).
`--real-kill` kills a real child process with SIGKILL where a scenario says kill (slower).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(HERE), str(HERE / "tests")]

OUTCOMES = ("equal", "refused", "wrong")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the first scenario's seed (the others follow)")
    parser.add_argument("--real-kill", action="store_true", help="kill faults SIGKILL a real child process")
    args = parser.parse_args(argv)

    import pytest
    import torch

    import fault_support as fs

    torch.set_num_threads(1)  # tiny networks: one thread is the fastest
    table: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    wrong, began = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        for seed in range(args.seed, args.seed + args.scenarios):
            scenario = fs.Scenario.draw(seed)
            fault = scenario.fault
            outcome = fs.run_scenario(scenario, Path(tmp) / "scenario", patch, Path(tmp) / "uninterrupted",
                                      real_kill=args.real_kill)
            kind = outcome.verdict.split(":")[0]
            table[(fault, scenario.change)][kind] += 1
            if kind == "wrong":
                wrong.append(f"seed {seed}: {outcome.verdict}")
    print_table(table, args, time.perf_counter() - began)
    for line in wrong:
        print(line)
    return 1 if wrong else 0


def print_table(table, args, seconds: float) -> None:
    kill = "real SIGKILL" if args.real_kill else "simulated kill"
    print(f"fault_matrix: {args.scenarios} scenarios from seed {args.seed} ({kill}), {seconds:.0f} s")
    print()
    for title, index in (("fault", 0), ("option changed", 1)):
        rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for key, counts in table.items():
            rows[key[index]].update(counts)
        width = max(len(title), *(len(name) for name in rows))
        print(f"{title:<{width}}  {'equal':>5}  {'refused':>7}  {'wrong':>5}")
        for name in sorted(rows):
            counts = rows[name]
            print(f"{name:<{width}}  {counts['equal']:>5}  {counts['refused']:>7}  {counts['wrong']:>5}")
        print()
    total = collections.Counter()
    for counts in table.values():
        total.update(counts)
    pairs = len(table)
    print(f"total: {total['equal']} equal, {total['refused']} refused, {total['wrong']} wrong "
          f"over {pairs} fault x change pairs")


if __name__ == "__main__":
    sys.exit(main())
