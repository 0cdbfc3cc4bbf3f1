"""The evaluation engine on synthetic datasets: metric, resume, limit, server split, 2 ranks."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_data import make_cityscapes, make_lip
from tiny_models import TinyConvNet

from repro.datasets import DATASETS, open_dataset
from repro.inference.transforms import test_transform
from repro.errors import CheckpointError, ReproError
from repro.engine import EngineOptions, EvalJob, progress_path, run_job
from repro.inference.reference import reference_predict
from repro.manifest import Protocol
from repro.results.files import read_result

NORMALIZE = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
# LIP-like ms+flip with slide windows, small enough for CPU tests
LIP_PROTOCOL = Protocol(
    upstream_block="test", resize={"output_size": [48, 36], "keep_ratio": False}, normalize=NORMALIZE,
    mode="slide", crop_size=[24, 24], stride=[16, 16], scales=[0.75, 1.0], flip=True,
    flip_pairs=[[15, 14], [17, 16], [19, 18]], probs_before_resize=True,
)
CITYSCAPES_PROTOCOL = Protocol(
    upstream_block="test", resize={"output_size": [64, 32], "keep_ratio": True}, normalize=NORMALIZE,
    mode="whole", crop_size=None, stride=None, scales=[1.0], flip=False, flip_pairs=[],
    probs_before_resize=False,
)
N_IMAGES = 7  # odd, so two ranks get unequal shares


class CountingDataset:
    """Delegates to a real EvalDataset; counts reads; raises once at index `crash_at`."""

    def __init__(self, inner, crash_at: int | None = None):
        self.inner, self.crash_at, self.reads = inner, crash_at, []

    def __len__(self):
        return len(self.inner)

    @property
    def ids(self):
        return self.inner.ids

    def __getattr__(self, name):  # image_path, label_path, ...: the files are the inner dataset's
        return getattr(self.inner, name)

    def __getitem__(self, i):
        if i == self.crash_at:
            raise RuntimeError("simulated crash")
        self.reads.append(i)
        return self.inner[i]


class ModelFactory:
    def __init__(self, num_classes):
        self.num_classes, self.calls = num_classes, 0

    def __call__(self):
        self.calls += 1
        return TinyConvNet(self.num_classes)


def lip_job(root: Path, dataset=None, sha: str = "a" * 64, factory=None) -> EvalJob:
    return EvalJob(
        model_id="tiny_lip", protocol_name="ms+flip", protocol=LIP_PROTOCOL,
        dataset=dataset if dataset is not None else open_dataset("lip", root, "val"),
        dataset_name="lip", split="val", data_root=str(root), class_names=DATASETS["lip"].class_names,
        build_model=factory or ModelFactory(20), checkpoint="tiny.pth", checkpoint_sha256=sha,
    )


def options(tmp_path: Path, **kw) -> EngineOptions:
    kw.setdefault("save_every", 1)
    return EngineOptions(device="cpu", results=tmp_path / "results", workers=0, **kw)


def independent_iou(root: Path, count: int) -> np.ndarray:
    """Per-class IoU from the upstream-shaped reference loop and set counting in numpy."""
    dataset = open_dataset("lip", root, "val")
    model = TinyConvNet(20)
    inter, union = np.zeros(20), np.zeros(20)
    for i in range(count):
        sample = dataset[i]
        x = test_transform(sample.image, LIP_PROTOCOL)
        scores = reference_predict(model, x, LIP_PROTOCOL, 20, output_size=sample.label.shape)
        pred = scores.argmax(0).numpy()
        valid = sample.label >= 0
        for c in range(20):
            p, g = (pred == c) & valid, (sample.label == c) & valid
            inter[c] += np.sum(p & g)
            union[c] += np.sum(p | g)
    with np.errstate(invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


@pytest.fixture(scope="module")
def lip_root(tmp_path_factory) -> Path:
    return make_lip(tmp_path_factory.mktemp("lip") / "LIP", n_val=N_IMAGES)


@pytest.fixture(scope="module")
def expected_iou(lip_root) -> np.ndarray:
    return independent_iou(lip_root, N_IMAGES)


def test_engine_matches_reference_loop_and_numpy_metric(lip_root, expected_iou, tmp_path):
    result = run_job(lip_job(lip_root), options(tmp_path))
    assert result.status == "complete" and result.num_images == result.num_images_total == N_IMAGES
    assert result.miou == pytest.approx(np.nanmean(expected_iou) * 100, abs=1e-9)
    assert result.miou_rounded == round(result.miou, 2)
    names = DATASETS["lip"].class_names
    for name, value in zip(names, expected_iou):
        got = result.per_class_iou[name]
        assert (got is None) if np.isnan(value) else got == pytest.approx(value * 100, abs=1e-9)
    on_disk = read_result(tmp_path / "results" / "tiny_lip__ms+flip.json")
    assert on_disk == result
    assert on_disk.settings["flip_pairs"] == [[15, 14], [17, 16], [19, 18]]
    assert not progress_path(tmp_path / "results", "tiny_lip__ms+flip", _single()).exists()


def _single():
    from repro.engine import Ranks

    return Ranks()


def test_resume_after_crash_gives_the_same_matrix(lip_root, expected_iou, tmp_path):
    crashing = CountingDataset(open_dataset("lip", lip_root, "val"), crash_at=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(lip_job(lip_root, crashing), options(tmp_path))
    state_file = progress_path(tmp_path / "results", "tiny_lip__ms+flip", _single())
    state = torch.load(state_file, weights_only=True)
    assert state["done"] == 4 and int(state["sinks"]["metric"]["state"]["matrix"].sum()) > 0

    resumed_data = CountingDataset(open_dataset("lip", lip_root, "val"))
    notes = []
    result = run_job(lip_job(lip_root, resumed_data), options(tmp_path), log=notes.append)
    assert resumed_data.reads == [4, 5, 6]  # only the images not yet counted
    assert any("resuming after 4" in n for n in notes)
    assert result.num_images == N_IMAGES
    assert result.miou == pytest.approx(np.nanmean(expected_iou) * 100, abs=1e-9)
    assert not state_file.exists()


def test_stale_progress_is_not_mixed_in(lip_root, tmp_path):
    crashing = CountingDataset(open_dataset("lip", lip_root, "val"), crash_at=3)
    with pytest.raises(RuntimeError):
        run_job(lip_job(lip_root, crashing, sha="a" * 64), options(tmp_path))
    other_checkpoint = CountingDataset(open_dataset("lip", lip_root, "val"))
    notes = []
    run_job(lip_job(lip_root, other_checkpoint, sha="b" * 64), options(tmp_path), log=notes.append)
    assert other_checkpoint.reads == list(range(N_IMAGES))
    assert any("other conditions (the checkpoint)" in n for n in notes)


def test_finished_run_is_not_redone_unless_asked(lip_root, tmp_path):
    factory = ModelFactory(20)
    first = run_job(lip_job(lip_root, factory=factory), options(tmp_path, limit=2))
    again = run_job(lip_job(lip_root, factory=factory), options(tmp_path, limit=2))
    assert factory.calls == 1 and again == first
    run_job(lip_job(lip_root, factory=factory), options(tmp_path, limit=2, resume=False))
    assert factory.calls == 1  # --no-resume discards saved progress only: a finished result is kept
    run_job(lip_job(lip_root, factory=factory), options(tmp_path, limit=2, force=True))
    assert factory.calls == 2
    # another limit is another evaluation
    run_job(lip_job(lip_root, factory=factory), options(tmp_path, limit=3))
    assert factory.calls == 3


def test_a_complete_result_of_other_conditions_is_replaced_only_with_force(lip_root, tmp_path):
    first = run_job(lip_job(lip_root), options(tmp_path))
    path = tmp_path / "results" / "tiny_lip__ms+flip.json"
    assert first.status == "complete" and path.is_file()
    with pytest.raises(ReproError) as refused:  # another checkpoint: the engine refuses, as the plan does
        run_job(lip_job(lip_root, sha="b" * 64), options(tmp_path))
    assert str(refused.value).startswith(f"{path} holds a complete result of other conditions (checkpoint")
    assert str(refused.value).endswith("--force replaces it (the old file is kept, renamed)")
    assert json.loads(path.read_text())["checkpoint_sha256"] == "a" * 64  # untouched
    run_job(lip_job(lip_root, sha="b" * 64), options(tmp_path, force=True))
    assert json.loads(path.read_text())["checkpoint_sha256"] == "b" * 64
    (kept,) = path.parent.glob("tiny_lip__ms+flip.json.replaced-*")
    assert json.loads(kept.read_text())["checkpoint_sha256"] == "a" * 64


def test_limit_gives_a_partial_result(lip_root, tmp_path):
    result = run_job(lip_job(lip_root), options(tmp_path, limit=2))
    assert result.status == "partial" and result.num_images == 2 and result.num_images_total == N_IMAGES
    assert result.miou == pytest.approx(np.nanmean(independent_iou(lip_root, 2)) * 100, abs=1e-9)


# Cityscapes trainId -> labelId (upstream_test_protocol.md §2, verified on cityscapesscripts)
TRAINID_TO_LABELID = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def test_cityscapes_test_split_writes_a_submission(tmp_path):
    root = make_cityscapes(tmp_path / "CityScapes", n_val=1, n_test=3)
    dataset = open_dataset("cityscapes", root, "test")
    job = EvalJob(
        model_id="tiny_cs", protocol_name="ms+flip", protocol=CITYSCAPES_PROTOCOL, dataset=dataset,
        dataset_name="cityscapes", split="test", data_root=str(root),
        class_names=DATASETS["cityscapes"].class_names, build_model=lambda: TinyConvNet(19),
        checkpoint_sha256="c" * 64, server=True,
    )
    result = run_job(job, options(tmp_path))
    assert result.status == "server" and result.miou is None and result.per_class_iou == {}
    assert result.num_images == 3
    archive = Path(result.submission)
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"{Path(i).name}.png" for i in dataset.ids)
        model = TinyConvNet(19)
        for i, sample_id in enumerate(dataset.ids):
            with z.open(f"{Path(sample_id).name}.png") as handle:
                written = np.array(Image.open(handle))
            sample = dataset[i]
            x = test_transform(sample.image, CITYSCAPES_PROTOCOL)
            pred = reference_predict(model, x, CITYSCAPES_PROTOCOL, 19, output_size=sample.image.shape[:2]).argmax(0)
            assert np.array_equal(written, np.array(TRAINID_TO_LABELID)[pred.numpy()])


# ---------------------------------------------------------------------------------------------
# Two ranks (gloo on 127.0.0.1 via a file store) give the single-process result


def _rank_main(rank: int, world_size: int, init_file: str, lip_root: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        run_job(lip_job(Path(lip_root)), EngineOptions(device="cpu", results=out, workers=0, save_every=1))
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process(lip_root, tmp_path):
    single = run_job(lip_job(lip_root), options(tmp_path))
    out = tmp_path / "dist"
    torch.multiprocessing.spawn(
        _rank_main, args=(2, str(tmp_path / "store"), str(lip_root), str(out)), nprocs=2, join=True
    )
    both = read_result(out / "tiny_lip__ms+flip.json")
    assert both.world_size == 2 and both.num_images == N_IMAGES
    assert both.miou == single.miou and both.per_class_iou == single.per_class_iou
    assert both.aacc == single.aacc and both.macc == single.macc
    assert not list((out / ".progress").glob("*.pt"))


# ---------------------------------------------------------------------------------------------
# Public API errors


def test_missing_checkpoint_says_how_to_fetch(tmp_path, monkeypatch):
    from repro.engine import evaluate

    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    with pytest.raises(CheckpointError, match="repro fetch memorynetv2_aspp_resnet50os8_lip"):
        evaluate("memorynetv2_aspp_resnet50os8_lip", "single", EngineOptions(data_root=tmp_path))


def test_missing_protocol_is_an_error(tmp_path):
    from repro.engine import evaluate

    with pytest.raises(ReproError, match="no 'ms\\+flip' protocol"):
        evaluate("memorynetv2_aspp_resnet50os8_lip", "ms+flip", EngineOptions(checkpoint=tmp_path / "x.pth"))


def test_bad_limit_and_precision(lip_root, tmp_path):
    with pytest.raises(ReproError, match="limit"):
        run_job(lip_job(lip_root), options(tmp_path, limit=0))
    with pytest.raises(ReproError, match="precision"):
        run_job(lip_job(lip_root), options(tmp_path, precision="fp8"))


def test_result_json_has_no_nan(lip_root, tmp_path):
    run_job(lip_job(lip_root), options(tmp_path, limit=1))
    text = (tmp_path / "results" / "tiny_lip__ms+flip__limit1.json").read_text()  # partial: its own file
    assert "NaN" not in text
    json.loads(text)
    assert os.path.getsize(tmp_path / "results" / "tiny_lip__ms+flip__limit1.json") > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    from repro.engine import resolve_device

    with pytest.raises(ReproError, match="--device cpu"):
        resolve_device("cuda")
    with pytest.raises(ReproError, match="bad device"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("limit", [1, 2])
def test_the_flop_fallback_counting_is_left_out_of_the_timing(lip_root, tmp_path, monkeypatch, limit):
    # where the first image's real pass cannot be watched, FLOPs are counted afterwards on a
    # "meta" twin; that count (here an hour on the session's clock) must not count as evaluation
    # time, one image or more. The clock is a fake one: no timing of the machine is asserted.
    import repro.engine.loop as engine
    import repro.engine.progress as progress

    class Clock:
        now = 0.0

        def perf_counter(self):
            self.now += 0.001  # every look at the clock: a millisecond of evaluation
            return self.now

    clock = Clock()
    monkeypatch.setattr(progress, "time", clock)
    monkeypatch.setattr(engine.FlopObserver, "observable", staticmethod(lambda model: False))

    def slow_count(*args, **kwargs):
        clock.now += 3600.0
        return 1e9

    monkeypatch.setattr(engine, "count_flops", slow_count)
    result = run_job(lip_job(lip_root), options(tmp_path, limit=limit))
    assert result.flops_per_image == 1e9 and result.num_images == limit
    assert 0 < result.seconds < 1.0, result.seconds
    assert result.seconds_per_image == pytest.approx(result.seconds / limit)


class OutOfMemoryAboveOne(torch.nn.Module):
    """TinyConvNet that runs out of memory on any forward of more than one input."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.inner = TinyConvNet(num_classes)
        self.refused = 0

    def forward(self, x):
        if x.shape[0] > 1:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.inner(x)


def test_an_out_of_memory_halving_is_said_once_and_recorded_in_the_result(lip_root, tmp_path, monkeypatch):
    """Batches of up to 4 windows (the pixel cap lifted, as on a GPU) meet a model that holds one:
    the batch is halved to 1 and retried, one line says so, the result's engine record counts it,
    and the numbers are those of one input per forward."""
    monkeypatch.setattr("repro.inference.predictor.auto_pixel_cap", lambda device_type, largest: None)
    model = OutOfMemoryAboveOne(20)
    lines: list[str] = []
    result = run_job(lip_job(lip_root, factory=lambda: model), options(tmp_path, max_batch=4), log=lines.append)
    assert model.refused == 2  # 4 inputs, then 2, then never again
    said = [line for line in lines if "out of memory" in line]
    assert len(said) == 1 and "with 4 inputs per forward" in said[0] and said[0].startswith("tiny_lip [ms+flip]: ")
    assert result.engine["oom_halvings"] == 2
    assert result.engine["max_batch_after_oom"] == 1 and result.engine["largest_batch"] == 1
    one_at_a_time = run_job(lip_job(lip_root), options(tmp_path / "one", max_batch=1))
    assert result.miou == pytest.approx(one_at_a_time.miou, abs=1e-9)
    assert result.per_class_iou == pytest.approx(one_at_a_time.per_class_iou, abs=1e-9, nan_ok=True)


def test_the_engine_reports_forward_passes_within_each_image(lip_root, tmp_path):
    """The heartbeat of long images: after each forward, (inputs done, the image's inputs); every
    image ends at its total, which is the protocol's passes for that image."""
    heard: list[tuple[int, int]] = []
    run_job(lip_job(lip_root), options(tmp_path, max_batch=1, limit=2),
            passes=lambda done, total: heard.append((done, total)))
    ends = [index for index, (done, total) in enumerate(heard) if done == total]
    assert len(ends) == 2  # two images
    first = heard[: ends[0] + 1]
    assert [done for done, _ in first] == list(range(1, first[-1][1] + 1))  # one input per forward
    assert {total for _, total in heard} == {first[-1][1]}  # same-size images: the same count
    assert first[-1][1] > 2  # windows x scales x flips of LIP_PROTOCOL
