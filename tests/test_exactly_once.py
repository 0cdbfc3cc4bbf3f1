"""Exactly once: any split of the images over ranks, or of the models over shards, counts each
image of each run once and gives the one-process result, a resumed rank included.

Ranks run as threads of this process (tests/rank_support.py): their gathers and barriers really
wait for each other, and a rank that dies breaks the others' next exchange, as a lost gloo peer
does. The real 2-process gloo run is tests/test_torchrun.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rank_support import ThreadWorld
from synthetic_data import make_lip
from test_evaluate import CountingDataset
from tiny_models import TinyConvNet

from repro.datasets import DATASETS, open_dataset
from repro.engine import EngineOptions, EvalJob, Ranks, progress_path, run_job
from repro.errors import ReproError
from repro.manifest import Protocol, load_manifest
from repro.results.files import read_result

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


def _one_process(root: Path, out: Path, limit: int | None = None):
    return run_job(_job(root, open_dataset("lip", root, "val")), _options(out, limit=limit))


def _all_ranks(root: Path, out: Path, world: ThreadWorld, limit: int | None = None, crash_at=None):
    """Every rank at once, each with its own recording dataset; returns (outcomes, reads per rank).
    `crash_at`: {rank: image index} at which that rank's dataset raises."""
    datasets = {rank: CountingDataset(open_dataset("lip", root, "val"), (crash_at or {}).get(rank))
                for rank in range(world.world_size)}
    outcomes = world.run(lambda rank: run_job(_job(root, datasets[rank]), _options(out, limit=limit)))
    return outcomes, {rank: dataset.reads for rank, dataset in datasets.items()}


def _same_result(a, b) -> None:
    assert a.miou == b.miou and a.aacc == b.aacc and a.macc == b.macc and a.per_class_iou == b.per_class_iou
    assert a.num_images == b.num_images and a.status == b.status
    assert a.evidence_sha256 == b.evidence_sha256  # the per-image rows, gathered and sorted by id


@pytest.mark.parametrize("world_size, limit", [(2, None), (3, None), (7, None), (9, None), (3, 5), (4, 2)])
def test_any_split_of_the_images_gives_the_one_process_result(lip_root, tmp_path, monkeypatch, world_size, limit):
    single = _one_process(lip_root, tmp_path / "one", limit)
    count = limit or N_IMAGES
    world = ThreadWorld(monkeypatch, world_size)
    outcomes, reads = _all_ranks(lip_root, tmp_path / "split", world, limit)
    every_read = sorted(index for share in reads.values() for index in share)
    assert every_read == list(range(count))  # each image once, none past the limit, no padding
    _same_result(outcomes[0], single)
    _same_result(read_result(tmp_path / "split" / Path(f"tiny_lip__ms+flip{'__limit' + str(limit) if limit else ''}.json")),
                 single)
    assert outcomes[0].world_size == world_size
    assert not list((tmp_path / "split" / ".progress").glob("*.pt"))


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_resumed_rank_counts_each_image_once(lip_root, tmp_path, monkeypatch, crash_after):
    single = _one_process(lip_root, tmp_path / "one")
    world = ThreadWorld(monkeypatch, 3)
    out = tmp_path / "split"
    share_1 = list(range(1, N_IMAGES, 3))  # rank 1 of 3: images 1 and 4
    outcomes, first = _all_ranks(lip_root, out, world, crash_at={1: share_1[crash_after]})
    assert isinstance(outcomes[1], RuntimeError) and "simulated crash" in str(outcomes[1])
    for rank in (0, 2):  # they counted their shares, then lost rank 1 at the merge: one line each
        assert isinstance(outcomes[rank], ReproError) and "lost contact" in str(outcomes[rank])
    saved = torch.load(progress_path(out, "tiny_lip__ms+flip", Ranks(1, 3)), weights_only=True)
    assert saved["done"] == crash_after

    outcomes, again = _all_ranks(lip_root, out, world)
    assert first[1] + again[1] == share_1  # the counted prefix is not read again
    assert again[0] == again[2] == []  # the other ranks had counted their whole shares
    _same_result(outcomes[0], single)
    _same_result(read_result(out / "tiny_lip__ms+flip.json"), single)
    assert not list((out / ".progress").glob("*.pt"))


def test_progress_of_another_world_size_is_not_mixed_in(lip_root, tmp_path, monkeypatch):
    single = _one_process(lip_root, tmp_path / "one")
    out = tmp_path / "split"
    _all_ranks(lip_root, out, ThreadWorld(monkeypatch, 3), crash_at={1: 4})
    outcomes, reads = _all_ranks(lip_root, out, ThreadWorld(monkeypatch, 2))  # another layout: all start afresh
    assert reads == {0: [0, 2, 4, 6], 1: [1, 3, 5]}
    _same_result(outcomes[0], single)


def test_a_rank_whose_progress_is_damaged_makes_every_rank_start_over(lip_root, tmp_path, monkeypatch):
    """Restore is all or nothing over the ranks too: they share the folders their sinks write."""
    single = _one_process(lip_root, tmp_path / "one")
    out = tmp_path / "split"
    world = ThreadWorld(monkeypatch, 2)
    _all_ranks(lip_root, out, world, crash_at={1: 3})
    progress_path(out, "tiny_lip__ms+flip", Ranks(1, 2)).write_bytes(b"not a progress file")
    outcomes, reads = _all_ranks(lip_root, out, world)
    assert reads == {0: [0, 2, 4, 6], 1: [1, 3, 5]}
    _same_result(outcomes[0], single)


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
