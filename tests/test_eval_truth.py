"""Runs that tell the truth: subset check, perf figures, time-based saves, signals, progress."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_data import make_lip
from test_evaluate import LIP_PROTOCOL, N_IMAGES, CountingDataset, lip_job, options
from tiny_models import TinyConvNet
from torch.utils.flop_counter import FlopCounterMode

from repro.datasets import open_dataset
from repro.inference.transforms import test_transform
from repro.errors import DatasetError
from repro.engine import Interrupts, Terminated, progress_path, run_job
from repro.inference.geometry import scaled_size, slide_windows
from repro.metrics import ConfusionMatrix
from repro.perf import device_peak_flops, peak_fraction
from repro.results.files import EvalResult


@pytest.fixture(scope="module")
def lip_root(tmp_path_factory) -> Path:
    return make_lip(tmp_path_factory.mktemp("lip") / "LIP", n_val=N_IMAGES)


def _single():
    from repro.engine import Ranks

    return Ranks()


# ---------------------------------------------------------------------------------------------
# Subset of the official split


def test_a_subset_is_refused_unless_allowed(lip_root, tmp_path):
    job = lip_job(lip_root)
    job.official_count = 10000
    with pytest.raises(DatasetError, match=r"has 7 of the official 10000 images.*--allow-subset"):
        run_job(job, options(tmp_path))
    assert not (tmp_path / "results" / "tiny_lip__ms+flip.json").exists()
    result = run_job(job, options(tmp_path, allow_subset=True))
    assert result.status == "partial" and result.partial_reason == "subset"
    assert result.num_images == result.num_images_total == N_IMAGES and result.num_images_official == 10000
    limited = run_job(job, options(tmp_path / "l", limit=2))  # --limit runs are partial anyway
    assert limited.partial_reason == "subset" and limited.num_images == 2


def test_limit_is_recorded_as_the_partial_reason(lip_root, tmp_path):
    job = lip_job(lip_root)
    job.official_count = N_IMAGES  # the whole split is there
    assert run_job(job, options(tmp_path)).partial_reason is None
    limited = run_job(job, options(tmp_path, limit=3))
    assert limited.status == "partial" and limited.partial_reason == "limit"


# ---------------------------------------------------------------------------------------------
# Performance figures


def _flops_of_first_image(root: Path) -> float:
    """The FLOPs of the first image's passes, counted directly on each pass's input shape."""
    sample = open_dataset("lip", root, "val")[0]
    height, width = test_transform(sample.image, LIP_PROTOCOL).shape[1:]
    model, total = TinyConvNet(20), 0
    for scale in LIP_PROTOCOL.scales:
        h, w = scaled_size(height, width, scale)
        for win in slide_windows(h, w, LIP_PROTOCOL.crop_size, LIP_PROTOCOL.stride):
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(torch.zeros(1, 3, win.y2 - win.y1, win.x2 - win.x1))
            total += counter.get_total_flops() * 2  # and its flipped twin
    return float(total)


def test_result_records_performance(lip_root, tmp_path):
    result = run_job(lip_job(lip_root), options(tmp_path))
    assert result.flops_per_image == pytest.approx(_flops_of_first_image(lip_root))
    assert result.engine["channels_last"] is True  # the CPU default
    timed = N_IMAGES  # FLOPs observed on the real first pass: that image is timed like the others
    assert result.seconds_per_image == pytest.approx(result.seconds / timed)
    assert result.images_per_second == pytest.approx(timed / result.seconds)
    assert result.peak_memory_kind == "process-rss" and result.peak_memory_bytes > 10 * 2**20
    assert result.device_peak_flops is None and result.peak_flops_fraction is None  # CPU: no known peak


def test_old_result_files_still_load(lip_root, tmp_path):
    result = run_job(lip_job(lip_root), options(tmp_path, limit=1))
    data = json.loads(result.model_dump_json())
    for name in ("seconds_per_image", "peak_memory_bytes", "peak_memory_kind", "flops_per_image",
                 "device_peak_flops", "peak_flops_fraction", "partial_reason", "num_images_official", "variant"):
        data.pop(name)
    old = EvalResult.model_validate(data)
    assert old.variant == "upstream-head" and old.flops_per_image is None and old.partial_reason is None


def test_device_peak_table():
    assert device_peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(66.9e12)
    assert device_peak_flops("NVIDIA H100 PCIe") == pytest.approx(51.2e12)
    assert device_peak_flops("NVIDIA H200") == pytest.approx(66.9e12)
    assert device_peak_flops("NVIDIA A100-SXM4-80GB") == pytest.approx(19.5e12)
    assert device_peak_flops("Tesla V100-SXM2-32GB") == pytest.approx(15.7e12)
    assert device_peak_flops("NVIDIA GeForce RTX 4090") == pytest.approx(82.6e12)
    assert device_peak_flops("cpu") is None and device_peak_flops(None) is None
    assert peak_fraction(1e12, 10.0, 2, 10e12) == pytest.approx(0.5)
    assert peak_fraction(None, 10.0, 1, 10e12) is None and peak_fraction(1e12, 10.0, 1, None) is None


# ---------------------------------------------------------------------------------------------
# Progress saved by time, and signals never split an image


def test_progress_is_saved_by_time_not_only_by_count(lip_root, tmp_path):
    state_file = progress_path(tmp_path / "results", "tiny_lip__ms+flip", _single())
    seen = []

    def watch(done, total):
        if 0 < done < total:
            seen.append(torch.load(state_file, weights_only=True)["done"] if state_file.exists() else None)

    opts = options(tmp_path, save_every=1000, save_every_seconds=1e-6)
    run_job(lip_job(lip_root), opts, progress=watch)
    assert seen == list(range(1, N_IMAGES))  # saved after every image although 1000 were asked for
    seen.clear()
    run_job(lip_job(lip_root), options(tmp_path, save_every=1000, force=True), progress=watch)
    assert seen == [None] * (N_IMAGES - 1)  # default 5 min: no save during a short run


def test_a_signal_inside_an_image_is_raised_after_it(lip_root):
    with Interrupts() as interrupts:
        steps = []
        with pytest.raises(Terminated):
            with interrupts.atomic():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("after the signal")  # still runs: the image is counted whole
        assert steps == ["after the signal"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_signal_inside_an_image_that_fails_is_not_lost():
    """A Ctrl-C that lands while an image's update raises (e.g. a bad label) still stops the run."""
    with pytest.raises(KeyboardInterrupt):
        with Interrupts() as interrupts:
            with interrupts.atomic():
                os.kill(os.getpid(), signal.SIGINT)
                raise ValueError("a label of the wrong shape")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_mid_run_saves_whole_images(lip_root, tmp_path):
    state_file = progress_path(tmp_path / "results", "tiny_lip__ms+flip", _single())

    def stop_after_three(done, total):
        if done == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated):
        run_job(lip_job(lip_root), options(tmp_path, save_every=1000), progress=stop_after_three)
    state = torch.load(state_file, weights_only=True)
    assert state["done"] == 3
    first_three = run_job(lip_job(lip_root), options(tmp_path / "three", limit=3))
    saved = ConfusionMatrix.from_numpy(np.asarray(state["sinks"]["metric"]["state"]["matrix"])).scores()
    assert saved.miou * 100 == first_three.miou  # exactly the first three images, each once
    resumed = run_job(lip_job(lip_root), options(tmp_path))
    one_shot = run_job(lip_job(lip_root), options(tmp_path / "once"))
    assert resumed.num_images == N_IMAGES
    assert (resumed.miou, resumed.aacc, resumed.per_class_iou) == (one_shot.miou, one_shot.aacc, one_shot.per_class_iou)


def test_result_cites_the_devices_last_selftest(lip_root, tmp_path, monkeypatch):
    from repro.results.selftest_records import selftest_record_path

    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "home"))
    assert run_job(lip_job(lip_root), options(tmp_path / "a")).selftest is None  # none recorded yet
    record = selftest_record_path("cpu")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"date": "2026-11-29T18:00:00+00:00", "passed": True, "device": "cpu",
                                  "quick": True, "environment": {"torch": torch.__version__}}))
    cited = run_job(lip_job(lip_root), options(tmp_path / "b")).selftest
    assert cited["passed"] is True and cited["path"] == str(record) and cited["date"].startswith("2026-11-29")


def test_after_an_interrupt_the_speed_counts_only_the_kept_images(lip_root, tmp_path, monkeypatch):
    """Each image read costs 1 s on a stand-in clock; the read that crashes costs 100 s and its
    image is redone on resume: the recorded time is that of the 7 kept images, 7 s."""
    import repro.engine.progress as progress_module

    clock = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: clock[0])

    class SlowReads(CountingDataset):
        def __getitem__(self, i):
            clock[0] += 100.0 if i == self.crash_at else 1.0
            return super().__getitem__(i)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(lip_job(lip_root, SlowReads(open_dataset("lip", lip_root, "val"), crash_at=4)), options(tmp_path))
    result = run_job(lip_job(lip_root, SlowReads(open_dataset("lip", lip_root, "val"))), options(tmp_path))
    assert result.num_images == N_IMAGES
    assert result.seconds == 7.0 and result.seconds_per_image == 1.0
