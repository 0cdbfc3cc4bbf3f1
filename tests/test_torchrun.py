"""`repro eval` under a real torchrun: 2 CPU processes (gloo) give the 1-process result exactly.

The dataset has an odd number of images, so the ranks get unequal shares (3 and 2); every image
must be counted exactly once and rank 0 alone must write the one result file. Each rank reads its
images in a data-loader worker process, as a real run does. The numbers are
also checked against an independent reference loop (the upstream-shaped `reference_predict`
and set counting in numpy), so two identically wrong runs cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from synthetic_data import make_lip

from repro.manifest import DEFAULT_PATH

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch build has no torch.distributed"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "memorynetv2_ppm_resnet50os8_lip"
N_IMAGES = 5  # odd: rank 0 gets 3 images, rank 1 gets 2
IMAGE_SIZE = (40, 56)  # height, width of the synthetic images (landscape)
RESIZE = [64, 48]  # the protocol's resize, shrunk from 473x473 to keep CPU time low
TIMEOUT_S = 600


def _small_manifest(path: Path) -> Path:
    """The bundled manifest reduced to MODEL, its single protocol resized to RESIZE."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = next(e for e in raw["models"] if e["id"] == MODEL)
    entry["protocols"]["single"]["resize"] = {"output_size": RESIZE, "keep_ratio": False}
    raw["models"] = [entry]
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from repro.models import build_segmentor, fill_model

    tmp = tmp_path_factory.mktemp("torchrun")
    manifest = _small_manifest(tmp / "zoo.yaml")
    data_root = tmp / "data"
    make_lip(data_root / "LIP", n_val=N_IMAGES, size=IMAGE_SIZE)
    model = fill_model(build_segmentor(MODEL)).eval()
    checkpoint = tmp / "filled.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"tmp": tmp, "manifest": manifest, "data_root": data_root, "checkpoint": checkpoint, "model": model}


def _torchrun(setup: dict, nproc: int, output: Path) -> tuple[subprocess.CompletedProcess, float]:
    launched = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "REPRO_DATA")
    env = {k: v for k, v in os.environ.items() if k not in launched}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        REPRO_HOME=str(setup["tmp"] / f"home{nproc}"),
        REPRO_MANIFEST=str(setup["manifest"]),
        OMP_NUM_THREADS="1",  # the same thread count in both runs (torchrun sets 1 for nproc > 1)
        CUDA_VISIBLE_DEVICES="",
    )
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo over the loopback interface (--standalone: master on localhost)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
        "-m", "repro", "eval", MODEL,
        "--checkpoint", str(setup["checkpoint"]), "--data-root", str(setup["data_root"]),
        "--results", str(output), "--device", "cpu", "--workers", "1", "--save-every", "1",
        "--allow-subset",  # a 5-image LIP: refused without it (the result is partial, never compared)
    ]
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    return completed, time.perf_counter() - start


def _expected_iou(setup: dict) -> np.ndarray:
    """Per-class IoU over all images from the reference loop, counted in numpy."""
    from repro.datasets import open_dataset
    from repro.inference.transforms import test_transform
    from repro.inference.reference import reference_predict
    from repro.manifest import load_manifest

    protocol = load_manifest(setup["manifest"]).get(MODEL).protocols["single"]
    dataset = open_dataset("lip", setup["data_root"] / "LIP", "val")
    assert len(dataset) == N_IMAGES
    inter, union = np.zeros(20), np.zeros(20)
    for i in range(N_IMAGES):
        sample = dataset[i]
        x = test_transform(sample.image, protocol)
        # upstream's fixed-size resize follows the orientation: a landscape image gets the long side as width
        assert tuple(x.shape[1:]) == (min(RESIZE), max(RESIZE))
        pred = reference_predict(setup["model"], x, protocol, 20, output_size=sample.label.shape).argmax(0).numpy()
        valid = sample.label >= 0
        for c in range(20):
            inter[c] += np.sum((pred == c) & (sample.label == c) & valid)
            union[c] += np.sum(((pred == c) | (sample.label == c)) & valid)
    with np.errstate(invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


STEM = f"{MODEL}__single__subset"  # a partial result (5 of LIP's 10000 images) has its own file


def _only_result(output: Path) -> dict:
    files = sorted(p.name for p in output.rglob("*") if p.is_file() and p.parent.name != ".locks")
    # one result and its evidence sidecar; no progress state, no temp file
    assert files == [f"{STEM}.evidence.npz", f"{STEM}.json"], files
    return json.loads((output / f"{STEM}.json").read_text())


def test_two_processes_under_torchrun_match_one(setup):
    one, one_s = _torchrun(setup, 1, setup["tmp"] / "out1")
    assert one.returncode == 0, one.stdout + one.stderr
    two, two_s = _torchrun(setup, 2, setup["tmp"] / "out2")
    assert two.returncode == 0, two.stdout + two.stderr
    print(f"\ntorchrun eval: 1 process {one_s:.1f} s, 2 processes {two_s:.1f} s")
    assert "Traceback" not in two.stdout + two.stderr

    single, double = _only_result(setup["tmp"] / "out1"), _only_result(setup["tmp"] / "out2")
    assert single["world_size"] == 1 and double["world_size"] == 2
    for result in (single, double):
        assert result["status"] == "partial" and result["partial_reason"] == "subset"  # 5 of LIP's 10000
        assert result["num_images"] == result["num_images_total"] == N_IMAGES
    for key in ("miou", "miou_rounded", "aacc", "macc", "per_class_iou", "num_images", "checkpoint_sha256", "settings",
                "evidence_sha256"):  # the per-image rows of both ranks, gathered: the one-process sidecar
        assert double[key] == single[key], key
    from repro.results.evidence import Evidence

    evidence = Evidence.load(setup["tmp"] / "out2" / double["evidence"], sha256=double["evidence_sha256"])
    assert evidence.miou() * 100 == double["miou"] and len(evidence.image_ids) == N_IMAGES

    expected = _expected_iou(setup)
    assert single["miou"] == pytest.approx(np.nanmean(expected) * 100, abs=1e-9)
    from repro.datasets import DATASETS

    for name, value in zip(DATASETS["lip"].class_names, expected):
        got = single["per_class_iou"][name]
        assert (got is None) if np.isnan(value) else got == pytest.approx(value * 100, abs=1e-9), name

    # only rank 0 reports: one summary table and one mIoU line
    assert two.stdout.count("evaluation summary") == 1, two.stdout
    assert sum("mIoU" in line and "rank 0's share" in line for line in two.stderr.splitlines()) == 1, two.stderr
