"""Exactly once: any split of the images over ranks, or of the models over shards, counts each
image of each run once and gives the one-process confusion matrix, a resumed rank included.

Ranks are simulated in one process, one after the other: `setup_distributed` returns the rank
fields, and `Collective.gather` returns the values of the ranks already run (the
last rank to run is rank 0, which writes the result, as with torchrun). The real 2-process gloo
run is tests/test_torchrun.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import make_lip
from test_evaluate import CountingDataset
from tiny_models import TinyConvNet

import repro.engine.run as run_module
from repro.datasets import DATASETS, open_dataset
from repro.engine import Collective, EngineOptions, EvalJob, Ranks, progress_path, run_job
from repro.results.files import read_result
from repro.manifest import Protocol, load_manifest

N_IMAGES = 7
PROTOCOL = Protocol(  # slide + two scales + flip with LIP's channel pairs: every path of the predictor
    upstream_block="test", resize={"output_size": [40, 32], "keep_ratio": False},
    normalize={"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    mode="slide", crop_size=[24, 24], stride=[16, 16], scales=[0.75, 1.0], flip=True,
    flip_pairs=[[15, 14], [17, 16], [19, 18]], probs_before_resize=True,
)


@pytest.fixture(scope="module")
def lip_root(tmp_path_factory) -> Path:
    return make_lip(tmp_path_factory.mktemp("lip") / "LIP", n_val=N_IMAGES)


def _job(root: Path, dataset) -> EvalJob:
    return EvalJob(
        model_id="tiny_lip", protocol_name="ms+flip", protocol=PROTOCOL, dataset=dataset, dataset_name="lip",
        split="val", data_root=str(root), class_names=DATASETS["lip"].class_names,
        build_model=lambda: TinyConvNet(20), checkpoint_sha256="e" * 64,
    )


def _options(out: Path, **kw) -> EngineOptions:
    return EngineOptions(device="cpu", results=out, workers=0, save_every=1, **kw)


class SimulatedWorld:
    """Patches the engine's distributed hooks so that ranks can run one after the other: each
    rank's `Collective.gather` returns the values of the ranks that ran before it (all of them
    for rank 0, which runs last and writes the result)."""

    def __init__(self, monkeypatch, world_size: int):
        self.world_size, self.rank = world_size, 0
        self.calls: dict[int, list] = {}
        monkeypatch.setattr(run_module, "setup_distributed", lambda device="auto": Ranks(self.rank, world_size, 0))
        world = self

        class Simulated(Collective):
            def gather(self, value):
                assert (self.ranks.rank, self.ranks.world_size) == (world.rank, world.world_size)
                calls = world.calls.setdefault(self.ranks.rank, [])
                calls.append(value)
                k = len(calls) - 1
                return [world.calls[r][k] for r in sorted(world.calls) if len(world.calls[r]) > k]

            def barrier(self):
                pass

        monkeypatch.setattr(run_module, "Collective", Simulated)

    @property
    def done(self) -> dict[int, int]:
        return {rank: calls[0][0] for rank, calls in self.calls.items()}  # the first gather: (done, seconds)

    @property
    def summed(self) -> np.ndarray:
        assert set(self.calls) == set(range(self.world_size)), "rank 0 must run last"
        k = next(k for k, v in enumerate(self.calls[0]) if isinstance(v, np.ndarray) and v.ndim == 2)
        return sum(calls[k] for calls in self.calls.values())

    def run(self, rank: int, job: EvalJob, options: EngineOptions):
        self.rank = rank
        return run_job(job, options)


def _one_process(root: Path, out: Path, monkeypatch, limit: int | None = None):
    world = SimulatedWorld(monkeypatch, 1)
    result = world.run(0, _job(root, open_dataset("lip", root, "val")), _options(out, limit=limit))
    return world.summed, result


def _all_ranks(root: Path, out: Path, world: SimulatedWorld, limit: int | None = None):
    """Ranks W-1 .. 0, each with its own recording dataset; returns (result, reads per rank)."""
    reads = {}
    for rank in reversed(range(world.world_size)):
        dataset = CountingDataset(open_dataset("lip", root, "val"))
        result = world.run(rank, _job(root, dataset), _options(out, limit=limit))
        reads[rank] = dataset.reads
    return result, reads


def _same_result(a, b) -> None:
    assert a.miou == b.miou and a.aacc == b.aacc and a.macc == b.macc and a.per_class_iou == b.per_class_iou
    assert a.num_images == b.num_images and a.status == b.status


@pytest.mark.parametrize("world_size, limit", [(2, None), (3, None), (7, None), (9, None), (3, 5), (4, 2)])
def test_any_split_of_the_images_gives_the_one_process_matrix(lip_root, tmp_path, monkeypatch, world_size, limit):
    expected, single = _one_process(lip_root, tmp_path / "one", monkeypatch, limit)
    count = limit or N_IMAGES
    assert expected.sum() > 0

    world = SimulatedWorld(monkeypatch, world_size)
    result, reads = _all_ranks(lip_root, tmp_path / "split", world, limit)
    every_read = sorted(index for share in reads.values() for index in share)
    assert every_read == list(range(count))  # each image once, none past the limit, no padding
    assert world.done == {rank: len(reads[rank]) for rank in range(world_size)}
    assert np.array_equal(world.summed, expected)
    _same_result(result, single)
    assert result.world_size == world_size
    assert result.evidence_sha256 == single.evidence_sha256  # the per-image rows, gathered and sorted by id
    assert not list((tmp_path / "split" / ".progress").glob("*.pt"))


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_resumed_rank_counts_each_image_once(lip_root, tmp_path, monkeypatch, crash_after):
    expected, single = _one_process(lip_root, tmp_path / "one", monkeypatch)
    world = SimulatedWorld(monkeypatch, 3)
    out = tmp_path / "split"
    share_1 = list(range(1, N_IMAGES, 3))  # rank 1 of 3: images 1 and 4
    crashing = CountingDataset(open_dataset("lip", lip_root, "val"), crash_at=share_1[crash_after])
    with pytest.raises(RuntimeError, match="simulated crash"):
        world.run(1, _job(lip_root, crashing), _options(out))
    saved = torch.load(progress_path(out, "tiny_lip", "ms+flip", Ranks(1, 3)), weights_only=True)
    assert saved["done"] == crash_after

    resumed = CountingDataset(open_dataset("lip", lip_root, "val"))
    world.run(1, _job(lip_root, resumed), _options(out))
    assert crashing.reads + resumed.reads == share_1  # the counted prefix is not read again
    for rank in (2, 0):
        world.run(rank, _job(lip_root, open_dataset("lip", lip_root, "val")), _options(out))
    assert np.array_equal(world.summed, expected)
    _same_result(read_back := read_result(out / "tiny_lip__ms+flip.json"), single)
    assert read_back.num_images == N_IMAGES
    assert read_back.evidence_sha256 == single.evidence_sha256


def test_progress_of_another_world_size_is_not_mixed_in(lip_root, tmp_path, monkeypatch):
    expected, _ = _one_process(lip_root, tmp_path / "one", monkeypatch)
    out = tmp_path / "split"
    three = SimulatedWorld(monkeypatch, 3)
    with pytest.raises(RuntimeError):
        three.run(1, _job(lip_root, CountingDataset(open_dataset("lip", lip_root, "val"), crash_at=4)), _options(out))
    two = SimulatedWorld(monkeypatch, 2)  # restarted with another layout: rank 1 of 2 starts afresh
    _, reads = _all_ranks(lip_root, out, two)
    assert reads == {1: [1, 3, 5], 0: [0, 2, 4, 6]}
    assert np.array_equal(two.summed, expected)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 60])
def test_any_split_of_the_models_runs_each_once(count):
    from repro.cli.eval import parse_shard, plan_runs

    manifest = load_manifest()
    for dataset in (None, "lip"):
        everything = plan_runs(manifest, None, True, dataset, "documented")[0]
        shards = [plan_runs(manifest, None, True, dataset, "documented", parse_shard(f"{i}/{count}"))[0]
                  for i in range(1, count + 1)]
        combined = [run for shard in shards for run in shard]
        assert sorted(combined, key=everything.index) == everything and len(set(combined)) == len(combined)
