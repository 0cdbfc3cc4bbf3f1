"""The expected peak memory of a run (repro.inference.footprint), as the plan shows it per row and
against a device's memory (repro.planning.plan / budget, repro.perf)."""

from __future__ import annotations

import re

import pytest

from repro.inference.footprint import (
    CUDA_CONTEXT_BYTES, FOOTPRINT_SIDES, FOOTPRINTS, GPU_FREE_SHARE, HOST_BASE_BYTES, HOST_SLACK, MIB, Footprint,
    estimate_peak, footprint_of,
)
from repro.inference.geometry import batch_size
from repro.manifest import load_manifest
from repro.perf import GIB, device_memory_bytes, host_memory_bytes
from repro.planning.budget import assumed_device, budget_lines
from repro.datasets import get_spec
from repro.planning.plan import DeviceInfo, build_plan, render_plan

ADE = "mcibi_deeplabv3_r50_ade20k"


def _linear(bytes_per_pixel: float, weights: int = 1000) -> Footprint:
    """A footprint whose forward takes `bytes_per_pixel` for every input pixel."""
    return Footprint(weights / MIB, tuple(bytes_per_pixel * side * side / MIB for side in FOOTPRINT_SIDES))


def test_every_architecture_has_a_memory_footprint():
    configs = {entry.upstream_config for entry in load_manifest().entries}
    assert configs <= set(FOOTPRINTS)
    for footprint in FOOTPRINTS.values():
        assert len(footprint.peaks_mib) == len(FOOTPRINT_SIDES) and footprint.weights > 0
        assert list(footprint.peaks_mib) == sorted(footprint.peaks_mib)  # more pixels, more memory


def test_footprint_interpolates_between_traced_sizes_and_extrapolates_quadratically():
    linear = _linear(100.0)
    for pixels in (1000, 300 * 300, 700 * 900, 3000 * 3000):
        assert linear.activations(pixels) == pytest.approx(100.0 * pixels)
        assert linear.activations(pixels, batch=3) == pytest.approx(300.0 * pixels)
    square = Footprint(1.0, tuple((side * side / 1e6) ** 2 for side in FOOTPRINT_SIDES))  # MiB = (Mpx)^2
    assert square.activations(3000 * 3000) == pytest.approx(81.0 * MIB)  # beyond the table: exact
    between = 900 * 900
    assert square.activations(between) >= (between / 1e6) ** 2 * MIB  # chords of a convex curve: above it


def test_peak_estimate_follows_the_predictors_batching():
    """Whole image with flip, one scale: on the CPU one input per forward (two would exceed the
    largest single input), on a GPU both, unless its memory only holds one."""
    footprint = _linear(100.0)
    protocol = {"resize": {"output_size": (20, 20), "keep_ratio": False}, "mode": "whole", "scales": (1.0,),
                "flip": True}
    images, outputs = 2 * 3 * 400 * 4, 2 * 3 * 25 * 4  # the image and its flip; logits at 1/4 side
    cpu = estimate_peak(footprint, protocol, (20, 20), 3, "cpu")
    assert (cpu.batch, cpu.activations, cpu.buffers) == (1, 40000, images + outputs)
    assert cpu.total == int(HOST_BASE_BYTES + footprint.weights + HOST_SLACK * (40000 + images + outputs))
    gpu = estimate_peak(footprint, protocol, (20, 20), 3, "cuda")
    assert (gpu.batch, gpu.activations, gpu.fixed) == (2, 80000, footprint.weights + CUDA_CONTEXT_BYTES)
    small = estimate_peak(footprint, protocol, (20, 20), 3, "cuda", device_memory=gpu.fixed + int(60000 / GPU_FREE_SHARE))
    assert small.batch == 1 and small.total < gpu.total
    assert estimate_peak(footprint, protocol, (20, 20), 3, "cuda", max_batch=1).batch == 1


def test_the_pixel_cap_and_the_memory_bound_the_batch():
    assert batch_size(100, 4, None) == 4
    assert batch_size(100, 4, 250) == 2 and batch_size(100, 4, 50) == 1  # never below one input
    assert batch_size(100, 4, None, fits=3) == 3 and batch_size(100, 4, 1000, fits=0) == 1


def test_ms_flip_on_the_cpu_peaks_at_the_largest_scale_alone():
    entry = load_manifest().get(ADE)
    footprint = footprint_of(entry.upstream_config)
    size = get_spec(entry.dataset).typical_image_size
    ms_flip = estimate_peak(footprint, entry.protocols["ms+flip"], size, entry.num_classes, "cpu")
    single = estimate_peak(footprint, entry.protocols["single"], size, entry.num_classes, "cpu")
    assert ms_flip.batch == 1 and ms_flip.total > 2 * single.total
    batched = estimate_peak(footprint, entry.protocols["ms+flip"], size, entry.num_classes, "cuda")
    assert batched.batch == 2 and batched.activations == pytest.approx(2 * ms_flip.activations, rel=1e-6)


def _plan(device: DeviceInfo, *protocols: str):
    runs = [type("Run", (), {"model_id": ADE, "protocol": name})() for name in protocols]
    return build_plan(load_manifest(), runs, [], "documented", device)


def test_the_plan_shows_each_rows_peak_against_the_devices_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_HOME", str(tmp_path))
    a100 = assumed_device("a100")
    plan = _plan(a100, "single", "ms+flip")
    entry = load_manifest().get(ADE)
    single, ms_flip = plan.rows
    expected = estimate_peak(footprint_of(entry.upstream_config), entry.protocols["ms+flip"],
                             get_spec("ade20k").typical_image_size, entry.num_classes, "cuda", device_memory=80 * GIB)
    assert ms_flip.peak_memory == expected.total and ms_flip.peak_memory > single.peak_memory
    lines = render_plan(plan)
    assert f"mem {ms_flip.peak_memory / GIB:.1f}/80 GiB" in lines[-3]
    assert not any("more than the" in line for line in lines)
    memory = next(line for line in budget_lines(plan) if "memory:" in line)
    assert memory == f"  memory: up to {ms_flip.peak_memory / GIB:.1f}/80 GiB ({ADE} ms+flip), estimated"
    tiny = _plan(DeviceInfo("cuda", "Tiny GPU 2GB"), "single", "ms+flip")
    assert render_plan(tiny)[-2].startswith("1 run needs more than the 2 GiB of Tiny GPU 2GB (estimated peak): "
                                           f"{ADE} ms+flip")
    cpu = _plan(DeviceInfo("cpu", "cpu", 2), "ms+flip")
    assert any(re.search(r"^  ms\+flip .* mem \d+\.\d/\d+ GiB  not fetched$", line) for line in render_plan(cpu))


def test_device_memory_sizes():
    assert device_memory_bytes("NVIDIA H100 80GB HBM3") == 80 * GIB
    assert device_memory_bytes("Tesla V100-SXM2-32GB") == 32 * GIB  # the name says it
    assert device_memory_bytes("NVIDIA H200") == 141 * GIB and device_memory_bytes("NVIDIA L40S") == 48 * GIB
    assert device_memory_bytes("Some GPU") is None and device_memory_bytes(None) is None
    assert host_memory_bytes() > GIB
    assert assumed_device("h100").memory == 80 * GIB and assumed_device("cpu").memory == host_memory_bytes()


def test_the_peak_resident_memory_can_start_afresh():
    """A command that evaluates several rows records each run's own peak, not the process's."""
    import numpy as np

    from repro.perf import process_peak_rss_bytes, reset_peak_rss

    block = np.ones(64 * MIB // 8)  # 64 MiB, touched
    high = process_peak_rss_bytes()
    del block
    if not reset_peak_rss():
        pytest.skip("this system cannot reset the peak resident memory")
    assert process_peak_rss_bytes() < high - 32 * MIB
