"""Guard for a behaviour-preserving restructuring: record what repro writes on a fixed scenario,
then compare a later tree against the record.

    python tools/layout_guard.py record GUARD_DIR     # on the commit before the change
    python tools/layout_guard.py compare GUARD_DIR    # on the commit after it; exit 1 on a difference

The scenario (in a fixed scratch folder, so that every path written into a file is the same):
- engine runs: the colour-reading network of tests/explain_support.py over synthetic ADE20k scenes
  (one folder with a corrupted label file, one intact), with saved predictions; planted runs with
  label faults (Cityscapes); a real `repro fetch --from` + `repro eval` of mcibi_deeplabv3_r50_lip
  with a deterministically filled checkpoint on a 3-image LIP folder (single and flip, with
  predictions and painted predictions);
- views of that results folder: `repro report` (md, csv, json, html, --all-rows, per-class),
  `repro status` (table, json), `repro explain` (table, json, --output pictures and index.html),
  `repro diff` (table, json), `repro eval --all --dry-run` (table, json).

What is compared:
- the result files: byte-identical JSON once the fields that differ between two runs of the same
  evaluation (times, speeds, peak memory, git commit, selftest record) are set aside;
- evidence sidecars and prediction PNGs: byte-identical;
- every view: byte-identical, computed by the tree under test from the *recorded* results folder
  (the same result files as at recording), so the comparison is of the code, not of the timings.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(os.environ.get("REPRO_GUARD_SCRATCH", "/tmp/repro-layout-guard"))
LIP_MODEL = "mcibi_deeplabv3_r50_lip"
ADE_MODEL = "mcibi_deeplabv3_r50_ade20k"
CITY_MODEL = "mcibi_deeplabv3_r50_cityscapes"
OLD_TIME = 1_600_000_000  # 2020-09-13: the cached checkpoint's mtime (the plan compares it with results)
# fields of a result that two runs of the same evaluation need not share
VOLATILE = ("started", "finished", "seconds", "images_per_second", "seconds_per_image", "peak_memory_bytes",
            "peak_flops_fraction", "git_commit", "selftest")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_HOME=str(SCRATCH / "home"), REPRO_DATA=str(SCRATCH / "data"),
               REPRO_RESULTS=str(SCRATCH / "results"), COLUMNS="100", PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), MPLBACKEND="Agg", TZ="UTC")
    return env


def repro(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "repro", *args], env=_env(), cwd=SCRATCH,
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"repro {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], env=_env(), cwd=SCRATCH, check=True)


# --------------------------------------------------------------------------------- the scenario


def make_runs() -> None:
    """Datasets, checkpoint and every result of the scenario, in SCRATCH (made anew)."""
    shutil.rmtree(SCRATCH, ignore_errors=True)
    (SCRATCH / "results").mkdir(parents=True)
    python(
        "from pathlib import Path\n"
        "import explain_support as ex, synthetic_data as sd\n"
        f"s = Path({str(SCRATCH)!r})\n"
        "broken = ex.make_scene_dataset('ade20k', s / 'scenes' / 'broken', n=12)\n"
        "ex.corrupt_label('ade20k', broken, 5)\n"
        "intact = ex.make_scene_dataset('ade20k', s / 'scenes' / 'intact', n=12)\n"
        "ex.engine_run('ade20k', broken, s / 'results', save_predictions=s / 'predictions' / 'ade-broken')\n"
        "ex.engine_run('ade20k', intact, s / 'intact-results', save_predictions=s / 'predictions' / 'ade-intact')\n"
        "city = ex.make_scene_dataset('cityscapes', s / 'scenes' / 'city', n=10)\n"
        "ex.planted_run(s / 'results', 'cityscapes', city, 'label-ids')\n"
        "ex.planted_run(s / 'results', 'cityscapes', city, None, protocol='flip', seed=2, perturb=0.02)\n"
        "sd.make_data_root(s / 'data', ['lip'])\n"
    )
    python(
        "import torch\n"
        "from repro.models import build_segmentor\n"
        "from repro.models.fill import fill_model\n"
        f"model = fill_model(build_segmentor({LIP_MODEL!r}))\n"
        f"torch.save({{'model': model.state_dict()}}, {str(SCRATCH / 'lip.pth')!r})\n"
    )
    repro("fetch", LIP_MODEL, "--from", str(SCRATCH / "lip.pth"), "--no-progress")
    for path in (SCRATCH / "home").rglob("*.pth"):  # older than any result, recorded or new
        os.utime(path, (OLD_TIME, OLD_TIME))
    for tta in ("single", "flip"):
        repro("eval", LIP_MODEL, "--tta", tta, "--allow-subset", "--device", "cpu", "--workers", "0",
              "--save-predictions", str(SCRATCH / "predictions" / f"lip-{tta}"), "--paint")


def views(out: Path) -> None:
    """Every view of SCRATCH/results, one file each, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results = SCRATCH / "results"
    ade = next(results.glob(f"{ADE_MODEL}__single.json"))
    commands = {
        "report.md": ["report"],
        "report-all-rows.md": ["report", "--all-rows"],
        "report-per-class.md": ["report", LIP_MODEL, CITY_MODEL],
        "report.csv": ["report", "--format", "csv"],
        "report.json": ["report", "--format", "json", "--all-rows"],
        "report.html": ["report", "--format", "html"],
        "status.txt": ["status"],
        "status.json": ["status", "--format", "json"],
        "explain-lip.txt": ["explain", LIP_MODEL, "--protocol", "flip"],
        "explain-lip.json": ["explain", LIP_MODEL, "--format", "json"],
        "explain-ade.txt": ["explain", str(ade)],
        "explain-city.txt": ["explain", CITY_MODEL, "--protocol", "single"],
        "diff-city.txt": ["diff", CITY_MODEL, CITY_MODEL, "--results", str(results), "--results",
                          str(results)],
        "diff-ade.txt": ["diff", str(ade), str(SCRATCH / "intact-results" / ade.name)],
        "diff-ade.json": ["diff", str(ade), str(SCRATCH / "intact-results" / ade.name), "--format", "json"],
        "plan.txt": ["eval", "--all", "--dry-run"],
        "plan.json": ["eval", "--all", "--dry-run", "--format", "json"],
        "plan-a100.txt": ["eval", LIP_MODEL, "--dry-run", "--assume-device", "a100"],
    }
    for name, args in commands.items():
        done = repro(*args, check=False)
        (out / name).write_text(f"exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}")
    for model, extra in ((LIP_MODEL, ["--protocol", "single"]), (ADE_MODEL, [])):
        folder = out / f"explain-{model}"
        repro("explain", model, *extra, "--output", str(folder), "--images", "2")


def normalised_result(path: Path) -> str:
    data = json.loads(path.read_text())
    for key in VOLATILE:
        data.pop(key, None)
    return json.dumps(data, indent=2, sort_keys=True)


def outputs(root: Path) -> dict[str, Path]:
    """The files the runs wrote: results (and their evidence) and predictions, by relative path."""
    found = {}
    for folder in ("results", "intact-results", "predictions"):
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "/." not in f"/{path.relative_to(root)}":
                found[str(path.relative_to(root))] = path
    return found


# --------------------------------------------------------------------------------- record, compare


def record(guard: Path) -> None:
    make_runs()
    shutil.rmtree(guard, ignore_errors=True)
    guard.mkdir(parents=True)
    for name, path in outputs(SCRATCH).items():
        target = guard / "runs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    views(guard / "views")
    count = sum(1 for p in guard.rglob("*") if p.is_file())
    print(f"recorded {count} files in {guard}")


def _same_run_file(name: str, old: Path, new: Path) -> bool:
    if name.endswith(".json") and "__" in Path(name).name:
        return normalised_result(old) == normalised_result(new)
    return filecmp.cmp(old, new, shallow=False)


def compare(guard: Path) -> int:
    make_runs()
    recorded = {str(p.relative_to(guard / "runs")): p for p in sorted((guard / "runs").rglob("*")) if p.is_file()}
    now = outputs(SCRATCH)
    problems = [f"only in the record: runs/{n}" for n in sorted(set(recorded) - set(now))]
    problems += [f"only now: runs/{n}" for n in sorted(set(now) - set(recorded))]
    problems += [f"differs: runs/{n}" for n in sorted(set(recorded) & set(now))
                 if not _same_run_file(n, recorded[n], now[n])]
    # the views, over the recorded result files (timings included), computed by this tree
    for folder in ("results", "intact-results", "predictions"):
        shutil.rmtree(SCRATCH / folder, ignore_errors=True)
        if (guard / "runs" / folder).exists():
            shutil.copytree(guard / "runs" / folder, SCRATCH / folder)
    fresh = SCRATCH / "views"
    views(fresh)
    old_views = {str(p.relative_to(guard / "views")): p for p in (guard / "views").rglob("*") if p.is_file()}
    new_views = {str(p.relative_to(fresh)): p for p in fresh.rglob("*") if p.is_file()}
    problems += [f"only in the record: views/{n}" for n in sorted(set(old_views) - set(new_views))]
    problems += [f"only now: views/{n}" for n in sorted(set(new_views) - set(old_views))]
    problems += [f"differs: views/{n}" for n in sorted(set(old_views) & set(new_views))
                 if not filecmp.cmp(old_views[n], new_views[n], shallow=False)]
    for line in problems:
        print(line)
    print(f"{len(recorded) + len(old_views)} recorded files compared: "
          + ("all identical" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("record", "compare"))
    parser.add_argument("guard_dir", type=Path)
    args = parser.parse_args()
    if args.action == "record":
        record(args.guard_dir.resolve())
        return 0
    return compare(args.guard_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
