"""A number marked complete is the number an uninterrupted run gives: faults injected into the real
engine at random points, options changed between the interrupted run and the one that resumes it
(tests/fault_support.py says what a scenario is and what is checked).

The default suite runs a fixed set of seeded scenarios (every fault and every change among them);
the slow form runs many more, kills real processes with SIGKILL, and interrupts one rank of a real
2-process gloo group. `python benchmarks/fault_matrix.py --scenarios 200 --seed S` prints the
fault x change table of outcomes.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from fault_support import CHANGES, FAULTS, IMAGES, Scenario, clean_run, make_data, make_job, make_options, run_scenario

from repro.engine import EngineOptions, run_job
from repro.errors import ReproError
from repro.results.files import read_result

DEFAULT_SEEDS = range(100)
SLOW_SEEDS = range(100, 600)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: one thread is many times faster than two on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uninterrupted")


def test_the_default_scenarios_cover_every_fault_and_every_change():
    drawn = [Scenario.draw(seed) for seed in DEFAULT_SEEDS]
    faults, changes = collections.Counter(s.fault for s in drawn), collections.Counter(s.change for s in drawn)
    assert set(faults) == set(FAULTS) and min(faults.values()) >= 2, faults
    assert set(changes) == set(CHANGES) and min(changes.values()) >= 2, changes


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_a_complete_result_is_the_uninterrupted_one(seed, tmp_path, monkeypatch, references):
    outcome = run_scenario(Scenario.draw(seed), tmp_path / "scenario", monkeypatch, references)
    assert not outcome.verdict.startswith("wrong"), (outcome.verdict, outcome.scenario)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_many_more_scenarios(seed, tmp_path, monkeypatch, references):
    outcome = run_scenario(Scenario.draw(seed), tmp_path / "scenario", monkeypatch, references)
    assert not outcome.verdict.startswith("wrong"), (outcome.verdict, outcome.scenario)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [s for s in range(300) if Scenario.draw(s).fault.startswith("kill")][:30])
def test_a_real_sigkill(seed, tmp_path, monkeypatch, references):
    outcome = run_scenario(Scenario.draw(seed), tmp_path / "scenario", monkeypatch, references, real_kill=True)
    assert not outcome.verdict.startswith("wrong"), (outcome.verdict, outcome.scenario)


def _gloo_rank(rank: int, init_file: str, root: str, crash_at: int | None) -> None:
    import torch.distributed as dist
    from test_evaluate import CountingDataset

    from fault_support import Settings

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    job = make_job(Path(root), Settings())
    if rank == 1 and crash_at is not None:
        job.dataset = CountingDataset(job.dataset, crash_at=crash_at)
    try:
        run_job(job, make_options(Path(root), Settings()))
    except ReproError as err:  # the rank that lost its peer: one line, its progress saved
        assert "lost contact" in str(err) and "\n" not in str(err), err
    except RuntimeError as err:
        assert "simulated crash" in str(err), err
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_one_rank_of_a_real_gloo_group_interrupted(tmp_path):
    """Rank 1 fails at its second image; rank 0 loses it at the merge (one line); the same run
    again resumes both ranks and gives the one-process result."""
    from fault_support import Settings

    single = clean_run(tmp_path / "single", Settings())
    root = tmp_path / "ranks"
    make_data(root, IMAGES)
    torch.multiprocessing.spawn(_gloo_rank, args=(str(tmp_path / "store1"), str(root), 3), nprocs=2, join=True)
    assert not (root / "results" / "tiny_lip__ms+flip.json").exists()
    assert len(list((root / "results" / ".progress").glob("*.pt"))) == 2
    torch.multiprocessing.spawn(_gloo_rank, args=(str(tmp_path / "store2"), str(root), None), nprocs=2, join=True)
    both = read_result(root / "results" / "tiny_lip__ms+flip.json")
    assert (both.miou, both.per_class_iou, both.evidence_sha256) == (single.miou, single.per_class_iou,
                                                                     single.evidence_sha256)
    assert both.world_size == 2 and not list((root / "results" / ".progress").glob("*.pt"))


def test_the_options_of_the_harness_are_the_engines(tmp_path):
    """The harness drives the real options object: a change of the harness's settings is a change
    of EngineOptions (a test of the test, so that 'equal' cannot come from options never applied)."""
    from dataclasses import replace

    from fault_support import Settings

    base = Settings(predictions="p", max_batch=2)
    options = make_options(tmp_path, replace(base, precision="bf16", resize_on_cpu=True, limit=3))
    assert isinstance(options, EngineOptions)
    assert (str(options.precision), options.resize_on_cpu, options.limit, options.max_batch) == ("bf16", True, 3, 2)
    assert options.save_predictions == tmp_path / "p"
    make_data(tmp_path, IMAGES + 1)
    assert len(make_job(tmp_path, base).dataset) == IMAGES + 1
