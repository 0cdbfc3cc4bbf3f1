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


def device_peak_flops(device_name: str | None) -> float | None:
    """The fp32 peak in FLOP/s of a GPU named like torch.cuda.get_device_name(); None when unknown."""
    if not device_name:
        return None
    for key, tflops in FP32_PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def peak_fraction(flops_per_image: float | None, images_per_second: float, devices: int,
                  peak_flops: float | None) -> float | None:
    """Achieved FLOP/s per device as a fraction of the device's peak (None when a part is unknown)."""
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
