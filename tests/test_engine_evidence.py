"""The evidence sidecar each run writes beside its result: per-image counts whose sum is the
confusion matrix, from which the JSON's metrics recompute exactly, whatever the protocol, and
identical (same bytes) after a resume, over ranks, or without labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import make_cityscapes, make_lip
from test_evaluate import CITYSCAPES_PROTOCOL, LIP_PROTOCOL, N_IMAGES, CountingDataset, lip_job, options
from tiny_models import TinyConvNet

from repro.datasets import DATASETS, open_dataset
from repro.inference.transforms import test_transform
from repro.engine import EngineOptions, EvalJob, run_job
from repro.results.evidence import Evidence
from repro.inference.reference import reference_predict
from repro.results.files import read_result

WHOLE = {"mode": "whole", "crop_size": None, "stride": None}
PROTOCOLS = {
    "single": LIP_PROTOCOL.model_copy(update={**WHOLE, "scales": [1.0], "flip": False}),
    "flip": LIP_PROTOCOL.model_copy(update={**WHOLE, "scales": [1.0], "flip": True}),
    "ms+flip": LIP_PROTOCOL.model_copy(update={**WHOLE, "scales": [0.75, 1.0], "flip": True}),
    "slide": LIP_PROTOCOL.model_copy(update={"scales": [1.0], "flip": False}),
}


@pytest.fixture(scope="module")
def lip_root(tmp_path_factory) -> Path:
    return make_lip(tmp_path_factory.mktemp("lip") / "LIP", n_val=N_IMAGES)


def _job(root: Path, protocol_name: str, dataset=None) -> EvalJob:
    job = lip_job(root, dataset)
    job.protocol = PROTOCOLS[protocol_name]
    return job


def _evidence(result, folder: Path) -> Evidence:
    assert result.evidence and result.evidence_sha256
    return Evidence.load(folder / result.evidence, sha256=result.evidence_sha256)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_the_sidecar_recomputes_the_json_metrics_exactly(lip_root, tmp_path, name):
    result = run_job(_job(lip_root, name), options(tmp_path))
    evidence = _evidence(result, tmp_path / "results")
    assert result.evidence == "tiny_lip__ms+flip.evidence.npz"
    assert evidence.miou() * 100 == result.miou
    scores = evidence.scores()
    assert scores.aacc * 100 == result.aacc and scores.macc * 100 == result.macc
    assert list(evidence.image_ids) == sorted(open_dataset("lip", lip_root, "val").ids)
    # the per-image rows sum to the confusion-derived totals, exactly
    m = evidence.confusion
    tp, gt, pred = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    assert np.array_equal(evidence.intersect.sum(axis=0), tp) and np.array_equal(evidence.gt_area.sum(axis=0), gt)
    assert np.array_equal(evidence.pred_area.sum(axis=0), pred)
    assert np.array_equal(evidence.union.sum(axis=0), gt + pred - tp)


def test_the_rows_are_each_images_own_counts(lip_root, tmp_path):
    """One image recounted independently: prediction of the reference loop, labels as read."""
    result = run_job(_job(lip_root, "flip"), options(tmp_path, limit=2))
    evidence = _evidence(result, tmp_path / "results")
    dataset, model = open_dataset("lip", lip_root, "val"), TinyConvNet(20)
    for i in range(2):
        sample = dataset[i]
        x = test_transform(sample.image, PROTOCOLS["flip"])
        pred = reference_predict(model, x, PROTOCOLS["flip"], 20, output_size=sample.label.shape).argmax(0).numpy()
        valid = (sample.label >= 0) & (sample.label < 20)
        row = list(evidence.image_ids).index(sample.id)
        for c in (0, 5, 19):
            p, g = (pred == c) & valid, (sample.label == c) & valid
            assert evidence.intersect[row, c] == np.sum(p & g) and evidence.union[row, c] == np.sum(p | g)
            assert evidence.gt_area[row, c] == g.sum() and evidence.pred_area[row, c] == p.sum()
        assert evidence.ignored[row] == (~valid).sum()


def test_a_resumed_run_writes_the_same_sidecar(lip_root, tmp_path):
    once = run_job(_job(lip_root, "ms+flip"), options(tmp_path / "once"))
    crashing = CountingDataset(open_dataset("lip", lip_root, "val"), crash_at=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(_job(lip_root, "ms+flip", crashing), options(tmp_path / "resumed"))
    resumed = run_job(_job(lip_root, "ms+flip"), options(tmp_path / "resumed"))
    assert resumed.evidence_sha256 == once.evidence_sha256
    assert _evidence(resumed, tmp_path / "resumed" / "results").miou() * 100 == resumed.miou == once.miou


def _rank_main(rank: int, world_size: int, init_file: str, lip_root: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        run_job(_job(Path(lip_root), "slide"), EngineOptions(device="cpu", results=out, workers=0, save_every=1))
    finally:
        dist.destroy_process_group()


def test_two_ranks_write_the_one_process_sidecar(lip_root, tmp_path):
    single = run_job(_job(lip_root, "slide"), options(tmp_path))
    out = tmp_path / "dist"
    torch.multiprocessing.spawn(_rank_main, args=(2, str(tmp_path / "store"), str(lip_root), str(out)), nprocs=2,
                                join=True)
    both = read_result(out / "tiny_lip__ms+flip.json")
    assert both.world_size == 2 and both.evidence_sha256 == single.evidence_sha256
    assert _evidence(both, out).miou() * 100 == both.miou == single.miou


def test_a_server_run_keeps_the_prediction_histogram_only(tmp_path):
    root = make_cityscapes(tmp_path / "CityScapes", n_val=1, n_test=3)
    dataset = open_dataset("cityscapes", root, "test")
    job = EvalJob(
        model_id="tiny_cs", protocol_name="single", protocol=CITYSCAPES_PROTOCOL, dataset=dataset,
        dataset_name="cityscapes", split="test", data_root=str(root),
        class_names=DATASETS["cityscapes"].class_names, build_model=lambda: TinyConvNet(19),
        checkpoint_sha256="c" * 64, server=True,
    )
    result = run_job(job, options(tmp_path))
    evidence = _evidence(result, tmp_path / "results")
    assert not evidence.has_labels and evidence.confusion is None and evidence.intersect is None
    assert list(evidence.image_ids) == sorted(dataset.ids)
    for i, sample_id in enumerate(evidence.image_ids):
        height, width = dataset[dataset.ids.index(sample_id)].image.shape[:2]
        assert evidence.pred_area[i].sum() == height * width  # every pixel, no label to ignore


def test_the_result_records_a_fingerprint_of_the_dataset_files(lip_root, tmp_path):
    first = run_job(lip_job(lip_root), options(tmp_path / "a", limit=1))
    assert first.dataset_fingerprint and len(first.dataset_fingerprint) == 64
    copy = make_lip(tmp_path / "copy" / "LIP", n_val=N_IMAGES)  # same files, another place: same digest
    assert run_job(lip_job(copy), options(tmp_path / "b", limit=1)).dataset_fingerprint == first.dataset_fingerprint
    dataset = open_dataset("lip", copy, "val")
    with open(dataset.label_path(3), "ab") as handle:  # one label file changed size
        handle.write(b"\0")
    changed = run_job(lip_job(copy), options(tmp_path / "c", limit=1))
    assert changed.dataset_fingerprint != first.dataset_fingerprint
