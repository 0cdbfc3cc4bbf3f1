"""Performance figures recorded with every result: peak memory, share of the peak (the FLOPs per
image come from `repro.inference.count_flops`).

Light at import (no torch): the eval command's plan uses the peak table before any model runs.
"""

from __future__ import annotations

import resource
import sys

# Dense fp32 peaks (TFLOP/s, no TF32, no sparsity) from the vendors' data sheets. Matched in
# order against torch.cuda.get_device_name(), so the more specific names come first.
FP32_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 51.2),
    ("H100 NVL", 60.0),
    ("H100", 66.9),  # SXM5
    ("H200", 66.9),
    ("H20", 44.0),
    ("GH200", 66.9),
    ("B200", 80.0),
    ("A100", 19.5),
    ("A800", 19.5),
    ("A40", 37.4),
    ("A30", 10.3),
    ("A10G", 31.2),
    ("A10", 31.2),
    ("L40S", 91.6),
    ("L40", 90.5),
    ("L4", 30.3),
    ("V100S", 16.4),
    ("V100-PCIE", 14.0),
    ("V100", 15.7),  # SXM2
    ("T4", 8.1),
    ("RTX 6000 Ada", 91.1),
    ("RTX A6000", 38.7),
    ("RTX 4090", 82.6),
    ("RTX 4080", 48.7),
    ("RTX 3090", 35.6),
    ("RTX 3080", 29.8),
    ("TITAN RTX", 16.3),
    ("RTX 2080 Ti", 13.4),
)


# Dense TF32 tensor-core peaks (TFLOP/s, no sparsity) from the data sheets, Ampere and newer;
# a GPU listed above but not here has no TF32 (V100, T4, Turing cards) or an unlisted peak.
TF32_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 378.0),
    ("H100 NVL", 417.5),
    ("H100", 494.7),  # SXM5
    ("H200", 494.7),
    ("H20", 74.0),
    ("GH200", 494.7),
    ("B200", 1100.0),
    ("A100", 156.0),
    ("A800", 156.0),
    ("A40", 74.8),
    ("A30", 82.0),
    ("A10G", 62.5),  # as the A10 (same chip)
    ("A10", 62.5),
    ("L40S", 183.0),
    ("L40", 181.0),
    ("L4", 60.0),
    ("RTX 6000 Ada", 182.1),
    ("RTX A6000", 77.4),
    ("RTX 4090", 82.6),
    ("RTX 3090", 35.6),
)
TF32_PRECISIONS = ("tf32", "tf32-all")
# Achieved share of the peak for this project's forwards (convolutions at batch 1-4):
# fp32 MEASURED on an H200 (issue 12's GPU run: 25-27 TFLOP/s of 66.9, 38-41%);
# TF32 ASSUMED (not yet measured: benchmarks/gpu_check.sh records it) -- tensor cores reach a
# smaller share of their peak on dilated convolutions, and resizes and softmax do not speed up.
FP32_ACHIEVED_SHARE = 0.39
TF32_ACHIEVED_SHARE = 0.20
# Where each share comes from, as the plan's budget and the README say it.
FP32_SHARE_SOURCE = "measured on an H200"
TF32_SHARE_SOURCE = "assumed"


def _lookup(table: tuple[tuple[str, float], ...], device_name: str) -> float | None:
    for key, tflops in table:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def device_peak_flops(device_name: str | None, precision: str | None = None) -> float | None:
    """The dense peak in FLOP/s of a GPU named like torch.cuda.get_device_name(), for float32 as
    `precision` computes it (fp32 CUDA cores; TF32 tensor cores for tf32 / tf32-all); None when
    unknown or when the GPU has no TF32."""
    if not device_name:
        return None
    if precision in TF32_PRECISIONS:
        if _lookup(FP32_PEAK_TFLOPS, device_name) is None:
            return None
        return _lookup(TF32_PEAK_TFLOPS, device_name)
    return _lookup(FP32_PEAK_TFLOPS, device_name)


def achieved_flops(device_name: str | None, precision: str | None = None) -> float | None:
    """The assumed sustained FLOP/s of a GPU for this project's forwards (peak x achieved share)."""
    peak = device_peak_flops(device_name, precision)
    if peak is None:
        return None
    return peak * achieved_share(precision)[0]


def achieved_share(precision: str | None) -> tuple[float, str]:
    """(the achieved share of the peak the estimates use for `precision`, where it comes from)."""
    if precision in TF32_PRECISIONS:
        return TF32_ACHIEVED_SHARE, TF32_SHARE_SOURCE
    return FP32_ACHIEVED_SHARE, FP32_SHARE_SOURCE


def peak_name(precision: str | None) -> str:
    """The peak a run's `peak_flops_fraction` is taken against: TF32 tensor cores for tf32 /
    tf32-all, else the fp32 (CUDA-core) peak."""
    return "TF32 peak" if precision in TF32_PRECISIONS else "fp32 peak"


def peak_fraction(flops_per_image: float | None, images_per_second: float, devices: int,
                  peak_flops: float | None) -> float | None:
    """Achieved FLOP/s per device as a fraction of `peak_flops`, the device's peak for the run's
    arithmetic (`device_peak_flops`; `peak_name` says which); None when a part is unknown."""
    if not flops_per_image or not peak_flops or images_per_second <= 0 or devices <= 0:
        return None
    return flops_per_image * images_per_second / devices / peak_flops


def process_peak_rss_bytes() -> int | None:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (OSError, ValueError):
        return None
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
