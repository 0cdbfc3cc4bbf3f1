"""Whole-process speed of `repro eval` against upstream's own test pipeline, same data and weights.

For each case (one per protocol kind: whole single, flip, ms+flip, slide) the script builds a
synthetic dataset in the real on-disk layout and a checkpoint in upstream's container
({'model': state_dict}, weights from the deterministic fill), then alternates whole processes:

  (a) `repro eval ID --protocol P --device cpu --checkpoint ... --data-root ...`
  (b) sssegmentation's own Tester (ssseg/test.py: its dataset class, dataloader, `auginference`,
      test loop and metric), run from its source in a separate venv by a small driver that this
      script writes to a temporary folder. The driver only swaps CUDA/NCCL for CPU/gloo
      (the tester is written for GPUs) and sets the protocol's inference settings.

and prints, per case, the median wall time of each side, the ratio, the CPU seconds and both
mIoUs (they must be equal: same predictions). Setup and the stand-in torchvision that upstream
needs are described in benchmarks/README.md.

    python benchmarks/vs_upstream.py --setup-venv /work/upstream-venv       # once
    python benchmarks/vs_upstream.py --upstream-python /work/upstream-venv/bin/python \\
        --upstream-src /tmp/upstream-src --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # synthetic_data: the test suite's dataset builders


@dataclass(frozen=True)
class Case:
    """One protocol kind: a manifest row and protocol, data size, and protocol overrides.

    Overrides shrink the test resize / crop so that the case runs in seconds on a CPU; both
    sides get the same settings (repro through a manifest copy, upstream through its config).
    """

    model_id: str
    protocol: str
    dataset: str
    images: int
    size: tuple[int, int]  # original image (height, width)
    overrides: dict = field(default_factory=dict)
    entry_overrides: dict = field(default_factory=dict)


CASES = {
    "single": Case("mcibi_deeplabv3_r50_ade20k", "single", "ade20k", 3, (96, 128),
                   {"resize": {"output_size": [1024, 256], "keep_ratio": True}}),
    "flip": Case("mcibi_deeplabv3_r50_lip", "flip", "lip", 3, (160, 120)),  # the case
    "ms+flip": Case("mcibi_deeplabv3_r50_ade20k", "ms+flip", "ade20k", 2, (96, 128),
                    {"resize": {"output_size": [384, 96], "keep_ratio": True}}),
    "slide": Case("mcibi_deeplabv3_r50_cityscapes", "ms+flip", "cityscapes", 3, (128, 256),
                  {"resize": {"output_size": [512, 256], "keep_ratio": True}, "crop_size": [256, 256],
                   "stride": [171, 171], "scales": [1.0], "flip": False},
                  {"eval": "local", "eval_split": "val"}),
}

UPSTREAM_PACKAGES = ["numpy", "pandas", "scipy", "pillow", "dill", "tqdm"]

# Stand-in for torchvision (the real one cannot load beside the CPU torch here): sssegmentation
# imports these names at import time (SAM / MaskFormer code the MCIBI models never run).
TORCHVISION_STANDIN = {
    "__init__.py": '"""Stand-in: only the names sssegmentation imports."""\n__version__ = "0.0.0+standin"\n\n\n'
                   "def _is_tracing():\n    return False\n",
    "_missing.py": "def missing(name):\n    def call(*args, **kwargs):\n"
                   "        raise NotImplementedError(f'torchvision stand-in: {name} is not available')\n"
                   "    return call\n",
    "ops/__init__.py": "",
    "ops/boxes.py": "from torchvision._missing import missing\n"
                    "batched_nms, box_area = missing('batched_nms'), missing('box_area')\n",
    "transforms/__init__.py": "from torchvision._missing import missing\n"
                              "Normalize, Resize = missing('Normalize'), missing('Resize')\n"
                              "ToTensor = missing('ToTensor')\n",
    "transforms/functional.py": "from torchvision._missing import missing\n"
                                "resize, to_pil_image = missing('resize'), missing('to_pil_image')\n",
}


# ---------------------------------------------------------------------------------------------
# The upstream side: venv, driver


def setup_venv(venv: Path) -> None:
    """Create the upstream venv: this machine's torch and OpenCV versions, upstream's other
    runtime needs, and the torchvision stand-in."""
    import cv2
    import torch

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    torch_version = torch.__version__.split("+")[0]
    cv2_version = next(iter(_installed_version("opencv-python-headless")), cv2.__version__)
    subprocess.run(pip + [f"torch=={torch_version}", f"opencv-python-headless=={cv2_version}"] + UPSTREAM_PACKAGES,
                   check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    for name, text in TORCHVISION_STANDIN.items():
        path = Path(site) / "torchvision" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"upstream venv ready: {venv}/bin/python (torch {torch_version}, torchvision stand-in)")


def _installed_version(dist: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [version(dist)]
    except PackageNotFoundError:
        return []


DRIVER = r'''
"""Runs sssegmentation's own Tester (ssseg/test.py) on the CPU for one config and protocol."""
import argparse, json, os, socket, sys, time

parser = argparse.ArgumentParser()
for name in ("--src", "--config", "--checkpoint", "--workdir", "--settings", "--result"):
    parser.add_argument(name, required=True)
args = parser.parse_args()
settings = json.loads(args.settings)

os.chdir(args.workdir)  # upstream's configs look for the dataset folders in the current folder
if not os.path.exists("ssseg"):
    os.symlink(os.path.join(args.src, "ssseg"), "ssseg")
sys.path.insert(0, args.workdir)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))

import torch
import torch.distributed as dist

# The tester is written for CUDA + NCCL: run it on the CPU with gloo and change nothing else.
torch.cuda.set_device = lambda *a, **k: None
torch.nn.Module.cuda = lambda self, *a, **k: self
_init_group = dist.init_process_group
dist.init_process_group = lambda *a, **k: _init_group(backend="gloo")
_tensor = torch.tensor
def _cpu_tensor(*a, **k):
    if str(k.get("device", "")).startswith("cuda"):
        k["device"] = "cpu"
    return _tensor(*a, **k)
torch.tensor = _cpu_tensor

from ssseg import test as tester
from ssseg.modules.datasets.base import BaseDataset

torch.cuda.is_available = lambda: True  # after the imports: some modules probe the GPU at import

class _Unwrapped:  # stands for DistributedDataParallel: the loop only uses .module and .eval()
    def __init__(self, model):
        self.module = model
    def eval(self):
        self.module.eval()
        return self
tester.BuildDistributedModel = lambda model, cfg: _Unwrapped(model)

class _Parser(tester.ConfigParser):  # the protocol under test (a config's commented-out block)
    def __call__(self, path):
        cfg, path = super().__call__(path)
        cfg.SEGMENTOR_CFG["inference"] = settings["inference"]
        test = cfg.SEGMENTOR_CFG["dataset"]["test"]
        if settings.get("set"):
            test["set"] = settings["set"]
        for step in test["data_pipelines"]:
            if step[0] == "Resize":
                step[1].update(settings["resize"])
        return cfg, path
tester.ConfigParser = _Parser

_evaluate = BaseDataset.evaluate
def _record(self, *a, **k):
    result = _evaluate(self, *a, **k)
    with open(args.result, "w") as f:
        json.dump(result, f)
    return result
BaseDataset.evaluate = _record

cmd_args = argparse.Namespace(local_rank=0, nproc_per_node=1, eval_env="local", slurm=False, ema=False,
                              cfgfilepath=os.path.join(args.workdir, "ssseg", "configs", args.config),
                              ckptspath=args.checkpoint)
with torch.no_grad():
    tester.Tester(cmd_args).start()
'''


def upstream_settings(protocol: dict, split: str | None) -> dict:
    """The inference / resize / set entries of upstream's config for a (manifest) protocol."""
    inference = {
        "forward": {"mode": protocol["mode"], "cropsize": protocol.get("crop_size"), "stride": protocol.get("stride")},
        "tta": {"multiscale": protocol["scales"], "flip": protocol["flip"],
                "use_probs_before_resize": protocol["probs_before_resize"]},
        "evaluate": {"metric_list": ["iou", "miou"]},
    }
    resize = {"output_size": tuple(protocol["resize"]["output_size"]), "keep_ratio": protocol["resize"]["keep_ratio"]}
    return {"inference": inference, "resize": resize, "set": split}


def find_config(src: Path, name: str) -> str:
    matches = sorted((src / "ssseg" / "configs").glob(f"*/{name}.py"))
    if not matches:
        raise SystemExit(f"error: upstream config {name}.py not found under {src}/ssseg/configs")
    return str(matches[0].relative_to(src / "ssseg" / "configs"))


# ---------------------------------------------------------------------------------------------
# The shared inputs: manifest copy, data, checkpoint


def write_manifest(case: Case, path: Path) -> dict:
    """A copy of the bundled manifest with the case's overrides; returns the case's protocol."""
    import yaml

    from repro.manifest import DEFAULT_PATH

    data = yaml.safe_load(Path(DEFAULT_PATH).read_text())
    entries = data["models"] if isinstance(data, dict) else data
    entry = next(e for e in entries if e["id"] == case.model_id)
    entry.update(case.entry_overrides)
    protocol = entry["protocols"][case.protocol]
    protocol.update(case.overrides)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return {"protocol": protocol, "split": entry["eval_split"], "config": entry["upstream_config"]}


def make_data(case: Case, root: Path) -> None:
    from synthetic_data import MAKERS

    from repro.datasets import DATASETS

    count = {"lip": "n_val", "ade20k": "n_val", "cityscapes": "n_val"}[case.dataset]
    MAKERS[case.dataset](root / DATASETS[case.dataset].folder, size=case.size, **{count: case.images})


def make_checkpoint(model_id: str, path: Path) -> None:
    """Filled weights in upstream's container; upstream's strict load falls back to non-strict
    (as its test script does) for the training-only auxiliary decoder that the file lacks."""
    import torch

    from repro.models import build_segmentor, fill_model

    model = fill_model(build_segmentor(model_id))
    torch.save({"model": model.state_dict()}, path)


# ---------------------------------------------------------------------------------------------
# Runs


def timed(command: list[str], env: dict, log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command[:3])} ... failed (exit {done.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def repro_miou(output: Path) -> tuple[float, list]:
    result = json.loads(next(output.glob("*.json")).read_text())
    return result["miou"], list(result["per_class_iou"].values())


def upstream_miou(path: Path) -> tuple[float, list]:
    result = json.loads(path.read_text())
    return 100.0 * result["miou"], [None if v != v else 100.0 * v for v in result["iou"].values()]


def run_case(name: str, case: Case, args, work: Path) -> dict:
    folder = work / name.replace("+", "_")
    (folder / "data").mkdir(parents=True)
    info = write_manifest(case, folder / "manifest.yaml")
    make_data(case, folder / "data")
    checkpoint = folder / "checkpoint.pth"
    make_checkpoint(case.model_id, checkpoint)
    env = dict(os.environ, REPRO_MANIFEST=str(folder / "manifest.yaml"), REPRO_HOME=str(folder / "home"))
    repro_cmd = [str(Path(sys.executable).parent / "repro"), "eval", case.model_id, "--protocol", case.protocol,
                 "--device", "cpu", "--checkpoint", str(checkpoint), "--data-root", str(folder / "data"),
                 "--results", str(folder / "out"), "--force", "--allow-subset"] + args.repro_args
    settings = upstream_settings(info["protocol"], info["split"])
    upstream_cmd = [args.upstream_python, str(work / "upstream_driver.py"), "--src", str(args.upstream_src),
                    "--config", find_config(args.upstream_src, info["config"]), "--checkpoint", str(checkpoint),
                    "--workdir", str(folder / "data"), "--settings", json.dumps(settings),
                    "--result", str(folder / "upstream.json")]
    times: dict[str, list] = {"repro": [], "upstream": []}
    for repeat in range(args.repeats):
        order = [("repro", repro_cmd), ("upstream", upstream_cmd)]
        for side, command in order if repeat % 2 == 0 else order[::-1]:  # alternate who goes first
            times[side].append(timed(command, env, folder / f"{side}.log"))
            print(f"  {name} {side:8s} run {repeat + 1}: {times[side][-1][0]:6.1f} s", flush=True)
    return summarize(name, case, times, repro_miou(folder / "out"), upstream_miou(folder / "upstream.json"))


def summarize(name: str, case: Case, times: dict, ours: tuple, theirs: tuple) -> dict:
    wall = {side: statistics.median(w for w, _ in runs) for side, runs in times.items()}
    cpu = {side: statistics.median(c for _, c in runs) for side, runs in times.items()}
    same_iou = len(ours[1]) == len(theirs[1]) and all(
        (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)
        for a, b in zip(ours[1], theirs[1]))
    return {
        "case": name, "model": case.model_id, "protocol": case.protocol, "images": case.images,
        "repro_s": wall["repro"], "upstream_s": wall["upstream"], "ratio": wall["upstream"] / wall["repro"],
        "repro_cpu_s": cpu["repro"], "upstream_cpu_s": cpu["upstream"],
        "repro_runs_s": [round(w, 2) for w, _ in times["repro"]],
        "upstream_runs_s": [round(w, 2) for w, _ in times["upstream"]],
        "repro_miou": ours[0], "upstream_miou": theirs[0], "same_per_class_iou": same_iou,
    }


def print_table(rows: list[dict]) -> None:
    print(f"\n{'case':8s} {'repro s':>8s} {'upstr. s':>8s} {'ratio':>6s} {'cpu r/u s':>13s} "
          f"{'repro mIoU':>11s} {'upstr. mIoU':>11s} same")
    for r in rows:
        print(f"{r['case']:8s} {r['repro_s']:8.1f} {r['upstream_s']:8.1f} {r['ratio']:5.2f}x "
              f"{r['repro_cpu_s']:6.1f}/{r['upstream_cpu_s']:<6.1f} {r['repro_miou']:11.4f} "
              f"{r['upstream_miou']:11.4f} {'yes' if r['same_per_class_iou'] else 'NO'}")
    print("(medians of whole-process wall times; ratio = upstream / repro; cpu = user+sys of the process tree)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup-venv", type=Path, help="create the upstream venv here and exit")
    parser.add_argument("--upstream-python", help="python of the upstream venv")
    parser.add_argument("--upstream-src", type=Path, help="folder holding upstream's ssseg/ package")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="whole processes per side and case")
    parser.add_argument("--repro-args", nargs=argparse.REMAINDER, default=[], help="extra `repro eval` options")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.setup_venv:
        setup_venv(args.setup_venv)
        return 0
    if not args.upstream_python or not args.upstream_src:
        parser.error("--upstream-python and --upstream-src are needed (see benchmarks/README.md)")
    if not (args.upstream_src / "ssseg" / "test.py").is_file():
        parser.error(f"{args.upstream_src} does not hold upstream's ssseg/test.py")
    args.upstream_src = args.upstream_src.resolve()
    with tempfile.TemporaryDirectory(prefix="vs-upstream-") as temp:
        work = args.keep or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "upstream_driver.py").write_text(DRIVER)
        print(f"{os.cpu_count()} CPUs, {args.repeats} alternated whole processes per side and case", flush=True)
        rows = [run_case(name, CASES[name], args, work) for name in args.cases]
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    same = all(r["same_per_class_iou"] and abs(r["repro_miou"] - r["upstream_miou"]) < 1e-6 for r in rows)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
