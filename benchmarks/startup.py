"""Start-up time of the commands that do not run a model.

Runs each command N times through the installed console script (a fresh process each time, as a
user types it) and prints the median, min and max wall time. The target on the development
machine is a median under 0.5 s for `repro --version`, `repro list`, `status` and `report`, and
under 1 s for `eval`'s plan (--dry-run) and its input errors (no torch on those paths).

    python benchmarks/startup.py              # 7 runs of each command
    python benchmarks/startup.py --runs 15 --repro .venv/bin/repro
    cd /tmp/old-checkout && python /work/main/benchmarks/startup.py --repro "python -m repro"

Each command runs once untimed first (bytecode and manifest caches filled, as after a user's first
run). PYTHONDONTWRITEBYTECODE is dropped from the children's environment unless --keep-env: with
it set, every start recompiles repro's own modules, which no user's setup does by default. The
time of `python -c pass` is printed too, to put the figures of a busy machine in proportion.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (
    ["--version"],
    ["list"],
    ["info", "mcibi_deeplabv3_r50_ade20k"],
    ["fetch", "--where"],
)
# Commands that plan or refuse without running a model (issue 18 #13: targets under 1 s for eval's
# plan and its input errors, under 0.5 s for status and report). {tmp} is a scratch folder with a
# text file posing as a checkpoint; each line is (arguments, the exit code the command must give).
NO_MODEL_COMMANDS = (
    (["eval", "--all", "--dry-run"], 0),
    (["eval", "mcibi_deeplabv3_r50_lip", "--checkpoint", "{tmp}/missing.pth"], 1),
    (["eval", "mcibi_deeplabv3_r50_lip", "--checkpoint", "{tmp}/text.pth", "--dataset-root", "lip={tmp}"], 1),
    (["eval", "mcibi_deeplabv3_r50_lip", "--protocol", "msflip"], 2),
    (["status"], 0),
    (["report", "--results", "{tmp}/results"], 0),
    (["status", "--results", "{tmp}/filled"], 0),  # a result file for every documented number
    (["report", "--results", "{tmp}/filled"], 0),
)
def default_repro() -> str:
    """The console script beside this interpreter (a venv's bin/), else the one on PATH."""
    beside = Path(sys.executable).with_name("repro")
    return str(beside) if beside.exists() else (shutil.which("repro") or "repro")


def time_command(command: list[str], runs: int, env: dict[str, str], expected: int = 0) -> list[float]:
    times = []
    for run in range(runs + 1):  # the first run fills the caches and is not counted
        start = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if run:
            times.append(time.perf_counter() - start)
        if done.returncode != expected:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}, not {expected}: {done.stderr.decode().strip()}")
    return times


def fill_results(folder: Path) -> int:
    """One complete result file per documented number of the bundled zoo (the measured value is the
    documented one), as a finished `repro eval --all` leaves them; returns how many."""
    from datetime import datetime, timezone

    from repro.manifest import load_manifest
    from repro.results.files import EvalResult, write_result

    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    count = 0
    for entry in load_manifest().entries:
        for protocol, documented in entry.documented.items():
            if documented is None:
                continue
            write_result(EvalResult(
                model_id=entry.id, protocol=protocol, settings={}, dataset=entry.dataset, split=entry.eval_split,
                data_root="/data", status="complete", miou=float(documented), num_images=100, num_images_total=100,
                started=when, finished=when, seconds=1.0, images_per_second=100.0, device="cpu",
                torch_version="2.13.0", repro_version="0.1.0",
            ), folder)
            count += 1
    return count


def scratch_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """A fresh cache, data and results folder, a folder of results for every documented number,
    and a text file posing as a checkpoint."""
    (tmp / "results").mkdir()
    print(f"(filled: {fill_results(tmp / 'filled')} result files)")
    (tmp / "text.pth").write_text("<html>rate limited</html>\n")
    (tmp / "val_id.txt").write_text("")  # a folder that looks like LIP: the checkpoint is what fails
    return {**env, "REPRO_HOME": str(tmp / "home"), "REPRO_DATA": str(tmp / "data"), "REPRO_RESULTS": str(tmp / "results")}


def report(label: str, times: list[float]) -> None:
    print(f"{label:<66} {statistics.median(times):>7.3f}s {min(times):>7.3f}s {max(times):>7.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    parser.add_argument("--repro", default=default_repro(), help="the command to time (default: the console script)")
    parser.add_argument("--keep-env", action="store_true", help="keep PYTHONDONTWRITEBYTECODE if set")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "120"}
    if not args.keep_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    repro = shlex.split(args.repro)
    print(f"{args.repro}, {args.runs} runs each, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'command':<66} {'median':>8} {'min':>8} {'max':>8}")
    report("python -c pass", time_command([sys.executable, "-c", "pass"], args.runs, env))
    for command in COMMANDS:
        report("repro " + " ".join(command), time_command([*repro, *command], args.runs, env))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        scratch = scratch_env(env, tmp)
        for command, expected in NO_MODEL_COMMANDS:
            filled = [part.replace("{tmp}", str(tmp)) for part in command]
            label = "repro " + " ".join(command).replace("{tmp}/", "").replace("lip={tmp}", "lip=DIR")
            report(label, time_command([*repro, *filled], args.runs, scratch, expected))


if __name__ == "__main__":
    main()
