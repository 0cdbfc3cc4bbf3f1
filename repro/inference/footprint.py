"""The expected peak memory of evaluating one image, without torch: the plan shows it per row
(`repro eval --dry-run`, against the device's memory with --assume-device), and a GPU `Predictor`
given an architecture's `Footprint` keeps its batch within the free memory.

The estimate adds
* a fixed part: on a CPU the process before the model (`HOST_BASE_BYTES`: Python, torch, OpenCV,
  repro) and the weights; on a GPU the CUDA context (`CUDA_CONTEXT_BYTES`, assumed) and the weights;
* the largest of the moments of one image, as `Predictor` runs it: per scale, the network's
  activations for the batch it forwards (`Footprint`, per input size) plus the buffers alive
  meanwhile (the scaled image and its flip, the sliding-window score buffers, the running sum at
  the original size); then the final resize (the running sum and one resized output).

`FOOTPRINTS` (tools/memory_table.py) are the tensors' bytes traced on the "meta" device; memory a
kernel takes for itself (oneDNN, cuDNN workspaces) and the allocator's slack come on top: on a CPU
a measured factor (`HOST_SLACK`), on a GPU nothing (`max_memory_allocated` counts tensors).
benchmarks/memory.py compares the estimate with measured peaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from repro.inference.geometry import (
    ScaleInputs, TTASettings, auto_pixel_cap, batch_size, largest_input_pixels, resize_output_size, scale_inputs,
    scaled_size,
)

FLOAT_BYTES = 4
MIB = 2**20
DECODER_STRIDE = 4  # the finest output stride of the zoo's decoders (HRNet, UperNet); ResNet-D8 is 8
CUDA_CONTEXT_BYTES = 512 * MIB  # CUDA's own context and kernels on the device (assumed; not allocated by torch)
GPU_FREE_SHARE = 0.8  # the share of a GPU's free memory a batch's activations may take (Predictor)
# On a CPU the resident memory exceeds the live tensors: freed blocks the allocator keeps, and
# oneDNN's per-shape kernels and reordered weights (more with channels_last), growing over the
# scales of an image. Measured with benchmarks/memory.py (resident peak less the fixed part, over
# the traced tensors): ADE20k R-50 single 1.22, ms+flip 1.52, Pascal-Context UPerNet slide 1.17.
HOST_SLACK = 1.35
FOOTPRINT_SIDES = (256, 512, 768, 1024, 1448, 2048)  # square inputs the table's peaks are traced at


class Footprint(NamedTuple):
    """The memory of one architecture: its weights, and the activation peak of a batch-1 forward
    at each size of `FOOTPRINT_SIDES` (MiB). The peak is not one polynomial in the pixels (the
    convolutions' part grows linearly, the attention over all positions quadratically, and either
    may hold the peak), so it is interpolated between the traced sizes."""

    weights_mib: float
    peaks_mib: tuple[float, ...]

    @property
    def weights(self) -> int:
        return int(self.weights_mib * MIB)

    def activations(self, pixels: int, batch: int = 1) -> float:
        """Activation peak (bytes) of a forward of `batch` inputs of `pixels` each: linear between
        the traced sizes (from the first two below them), quadratic through the last three above."""
        grid = [side * side for side in FOOTPRINT_SIDES]
        peaks = self.peaks_mib
        if pixels > grid[-1]:
            (x0, x1, x2), (y0, y1, y2) = grid[-3:], peaks[-3:]
            peak = (y0 * (pixels - x1) * (pixels - x2) / ((x0 - x1) * (x0 - x2))
                    + y1 * (pixels - x0) * (pixels - x2) / ((x1 - x0) * (x1 - x2))
                    + y2 * (pixels - x0) * (pixels - x1) / ((x2 - x0) * (x2 - x1)))
        else:
            upper = max(1, next(i for i, x in enumerate(grid) if x >= pixels))
            x0, x1, y0, y1 = grid[upper - 1], grid[upper], peaks[upper - 1], peaks[upper]
            peak = y0 + (y1 - y0) * (pixels - x0) / (x1 - x0)
        return batch * max(0.0, peak) * MIB


# tools/memory_table.py: MiB of weights, MiB of the forward's peak at (256, 512, 768, 1024, 1448, 2048) squared
# worst fit at 896x1195 and 473x473: 8.1% off the traced peak
HOST_BASE_BYTES = 270016512
FOOTPRINTS: dict[str, Footprint] = {
    "mcibi_deeplabv3_hrnetv2w48_ade20k": Footprint(392.0, (185.6, 2278.4, 10886.3, 33689.5, 132858.6, 527974.0)),
    "mcibi_deeplabv3_hrnetv2w48_cityscapes": Footprint(409.0, (38.1, 228.5, 874.2, 2450.2, 8992.7, 34376.8)),
    "mcibi_deeplabv3_hrnetv2w48_cocostuff10k": Footprint(392.2, (186.1, 2280.4, 10890.8, 33697.5, 132874.6, 528006.0)),
    "mcibi_deeplabv3_hrnetv2w48_lip": Footprint(409.0, (38.1, 228.6, 874.3, 2450.2, 8992.8, 34377.0)),
    "mcibi_deeplabv3_resnest101os8_ade20k": Footprint(417.9, (42.0, 246.3, 914.3, 2521.4, 9135.0, 34661.5)),
    "mcibi_deeplabv3_resnest101os8_cityscapes": Footprint(417.1, (42.0, 244.3, 909.7, 2513.2, 9118.7, 34628.8)),
    "mcibi_deeplabv3_resnest101os8_cocostuff10k": Footprint(418.0, (42.0, 246.8, 915.4, 2523.4, 9139.0, 34669.5)),
    "mcibi_deeplabv3_resnest101os8_lip": Footprint(417.1, (42.0, 244.3, 909.7, 2513.2, 9118.8, 34629.0)),
    "mcibi_deeplabv3_resnet101os8_ade20k": Footprint(403.6, (42.0, 246.3, 914.3, 2521.4, 9135.0, 34661.5)),
    "mcibi_deeplabv3_resnet101os8_cityscapes": Footprint(402.9, (42.0, 244.3, 909.7, 2513.2, 9118.7, 34628.8)),
    "mcibi_deeplabv3_resnet101os8_cocostuff10k": Footprint(403.8, (42.0, 246.8, 915.4, 2523.4, 9139.0, 34669.5)),
    "mcibi_deeplabv3_resnet101os8_lip": Footprint(402.9, (42.0, 244.3, 909.7, 2513.2, 9118.8, 34629.0)),
    "mcibi_deeplabv3_resnet50os8_ade20k": Footprint(331.0, (42.0, 246.3, 914.3, 2521.4, 9135.0, 34661.5)),
    "mcibi_deeplabv3_resnet50os8_cityscapes": Footprint(330.2, (42.0, 244.3, 909.7, 2513.2, 9118.7, 34628.8)),
    "mcibi_deeplabv3_resnet50os8_cocostuff10k": Footprint(331.2, (42.0, 246.8, 915.4, 2523.4, 9139.0, 34669.5)),
    "mcibi_deeplabv3_resnet50os8_lip": Footprint(330.2, (42.0, 244.3, 909.7, 2513.2, 9118.8, 34629.0)),
    "mcibi_deeplabv3_vitlarge_ade20k": Footprint(1325.3, (18.1, 168.3, 738.6, 2209.0, 8696.5, 33412.0)),
    "mcibi_deeplabv3_vitlarge_cocostuff10k": Footprint(1325.5, (18.1, 168.3, 738.6, 2209.0, 8696.5, 33412.0)),
    "mcibiplusplus_aspp_hrnetv2w48_cityscapes": Footprint(405.7, (115.6, 462.2, 1039.9, 2738.2, 9568.7, 35529.0)),
    "mcibiplusplus_aspp_hrnetv2w48_lip": Footprint(397.7, (115.6, 462.3, 1040.1, 2739.0, 9570.2, 35532.0)),
    "mcibiplusplus_aspp_resnest101os8_cityscapes": Footprint(417.1, (44.1, 236.9, 893.0, 2483.6, 9059.4, 34510.2)),
    "mcibiplusplus_aspp_resnet101os8_cityscapes": Footprint(402.9, (44.1, 236.9, 893.0, 2483.6, 9059.4, 34510.2)),
    "mcibiplusplus_aspp_resnet50os8_ade20k": Footprint(328.4, (44.6, 243.0, 906.8, 2508.1, 9108.6, 34608.5)),
    "mcibiplusplus_aspp_resnet50os8_cityscapes": Footprint(314.2, (44.1, 236.9, 893.0, 2483.6, 9059.4, 34510.2)),
    "mcibiplusplus_aspp_resnet50os8_cocostuff10k": Footprint(331.2, (44.7, 244.5, 910.2, 2514.1, 9120.6, 34632.5)),
    "mcibiplusplus_aspp_resnet50os8_lip": Footprint(314.2, (44.1, 236.9, 893.1, 2483.8, 9059.8, 34511.0)),
    "mcibiplusplus_ppm_resnet50os8_ade20k": Footprint(242.0, (48.6, 240.7, 901.5, 2498.8, 9089.8, 34571.0)),
    "mcibiplusplus_ppm_resnet50os8_cityscapes": Footprint(270.7, (48.1, 236.9, 893.0, 2483.6, 9059.4, 34510.2)),
    "mcibiplusplus_ppm_resnet50os8_cocostuff10k": Footprint(258.2, (48.7, 244.5, 910.2, 2514.1, 9120.6, 34632.5)),
    "mcibiplusplus_ppm_resnet50os8_lip": Footprint(241.2, (48.1, 236.9, 893.1, 2483.8, 9059.8, 34511.0)),
    "mcibiplusplus_resnet50os8_ade20k": Footprint(149.1, (37.0, 232.7, 883.5, 2466.8, 9025.8, 34443.0)),
    "mcibiplusplus_resnet50os8_cityscapes": Footprint(148.6, (37.0, 228.6, 874.3, 2450.4, 8993.1, 34377.5)),
    "mcibiplusplus_resnet50os8_cocostuff10k": Footprint(149.2, (37.0, 233.7, 885.8, 2470.8, 9033.8, 34459.0)),
    "mcibiplusplus_resnet50os8_lip": Footprint(148.6, (37.0, 228.6, 874.4, 2450.5, 8993.3, 34378.0)),
    "mcibiplusplus_upernet_resnest101os8_ade20k": Footprint(503.4, (145.5, 580.7, 1306.5, 2508.1, 9108.6, 34608.5)),
    "mcibiplusplus_upernet_resnest101os8_cocostuff10k": Footprint(438.6, (145.8, 581.7, 1308.8, 2514.1, 9120.6, 34632.5)),
    "mcibiplusplus_upernet_resnest101os8_lip": Footprint(429.6, (144.2, 576.6, 1297.4, 2483.8, 9059.8, 34511.0)),
    "mcibiplusplus_upernet_resnest101os8_pascalcontext59": Footprint(502.9, (144.6, 577.8, 1300.1, 2491.1, 9074.4, 34540.2)),
    "mcibiplusplus_upernet_resnet101os8_ade20k": Footprint(489.2, (145.5, 580.7, 1306.5, 2508.1, 9108.6, 34608.5)),
    "mcibiplusplus_upernet_resnet101os8_cocostuff10k": Footprint(489.4, (145.8, 581.7, 1308.8, 2514.1, 9120.6, 34632.5)),
    "mcibiplusplus_upernet_resnet101os8_lip": Footprint(415.4, (144.2, 576.6, 1297.4, 2483.8, 9059.8, 34511.0)),
    "mcibiplusplus_upernet_resnet101os8_pascalcontext59": Footprint(488.6, (144.6, 577.8, 1300.1, 2491.1, 9074.4, 34540.2)),
    "mcibiplusplus_upernet_resnet101os8_voc": Footprint(415.4, (144.2, 576.7, 1297.5, 2483.9, 9060.2, 34511.8)),
    "mcibiplusplus_upernet_resnet101os8_vspw": Footprint(489.0, (145.2, 579.9, 1304.7, 2503.2, 9098.8, 34589.0)),
    "mcibiplusplus_upernet_resnet50os8_ade20k": Footprint(343.5, (145.5, 580.7, 1306.5, 2508.1, 9108.6, 34608.5)),
    "mcibiplusplus_upernet_resnet50os8_cityscapes": Footprint(359.8, (204.2, 816.6, 1837.3, 3266.4, 9059.4, 34510.2)),
    "mcibiplusplus_upernet_resnet50os8_cocostuff10k": Footprint(343.7, (145.8, 581.7, 1308.8, 2514.1, 9120.6, 34632.5)),
    "mcibiplusplus_upernet_resnet50os8_lip": Footprint(342.7, (144.2, 576.6, 1297.4, 2483.8, 9059.8, 34511.0)),
    "mcibiplusplus_upernet_resnet50os8_voc": Footprint(415.8, (144.2, 576.7, 1297.5, 2483.9, 9060.2, 34511.8)),
    "mcibiplusplus_upernet_swinlarge_ade20k": Footprint(1037.8, (118.1, 471.3, 1060.4, 1885.2, 3771.5, 7540.7)),
    "mcibiplusplus_upernet_swinlarge_cocostuff10k": Footprint(1035.4, (118.2, 471.4, 1060.5, 1885.4, 3772.0, 7541.7)),
    "mcibiplusplus_upernet_swinlarge_lip": Footprint(937.5, (117.8, 471.0, 1059.8, 1884.2, 3769.4, 7536.6)),
    "mcibiplusplus_upernet_swinlarge_pascalcontext59": Footprint(1034.7, (117.9, 471.1, 1060.0, 1884.5, 3770.0, 7537.8)),
    "mcibiplusplus_upernet_swinlarge_vspw": Footprint(988.6, (118.1, 471.2, 1060.3, 1885.0, 3771.1, 7539.9)),
}


def footprint_of(upstream_config: str) -> Footprint | None:
    """The table's figures for an upstream config (None: not in the table)."""
    return FOOTPRINTS.get(upstream_config)


@dataclass(frozen=True)
class PeakEstimate:
    """The expected peak of a run (bytes), and its parts."""

    total: int  # fixed + the per-image part (times HOST_SLACK on a CPU)
    fixed: int  # process or context, and the weights
    activations: int  # of the network at the peak moment
    buffers: int  # images, score buffers and sums alive at that moment
    batch: int  # inputs per forward at the peak moment


def estimate_peak(
    footprint: Footprint, protocol: Any, image_size: tuple[int, int], num_classes: int, device_type: str,
    *, max_batch: int = 4, device_memory: int | None = None,
) -> PeakEstimate:
    """The expected peak memory of one original image of `image_size` (h, w) under `protocol`
    on `device_type` ("cpu": the process's resident memory; "cuda": device memory), batched as
    `Predictor(max_batch=..., batch_pixels="auto")` batches; on a GPU of `device_memory` bytes, as
    a Predictor given the `footprint` batches (within the free memory)."""
    from repro.manifest import field_of

    resize = field_of(protocol, "resize")
    height, width = resize_output_size(image_size[0], image_size[1], field_of(resize, "output_size"),
                                       bool(field_of(resize, "keep_ratio")))
    settings = TTASettings.from_protocol(protocol)
    inputs = scale_inputs(height, width, settings)
    cuda = device_type == "cuda"
    fixed = footprint.weights + (CUDA_CONTEXT_BYTES if cuda else HOST_BASE_BYTES)
    cap = auto_pixel_cap(device_type, largest_input_pixels(inputs))
    total_sum = FLOAT_BYTES * num_classes * image_size[0] * image_size[1]  # the running sum, one resized output
    moments = [(0.0, 2.0 * total_sum, 1)]  # the final resize
    for index, (item, scale) in enumerate(zip(inputs, settings.scales)):
        fits = None
        if cuda and device_memory is not None:  # what the free memory holds, as Predictor asks it
            fits = int(GPU_FREE_SHARE * max(0, device_memory - fixed) // max(1.0, footprint.activations(item.pixels)))
        batch = min(item.count, batch_size(item.pixels, max_batch, cap, fits))
        buffers = _scale_buffers(settings, item, scaled_size(height, width, scale), num_classes, batch)
        moments.append((footprint.activations(item.pixels, batch), buffers + (total_sum if index else 0), batch))
    activations, buffers, batch = max(moments, key=lambda moment: moment[0] + moment[1])
    slack = 1.0 if cuda else HOST_SLACK
    return PeakEstimate(int(fixed + slack * (activations + buffers)), int(fixed), int(activations), int(buffers), batch)


def _scale_buffers(settings: TTASettings, item: ScaleInputs, size: tuple[int, int], num_classes: int,
                   batch: int) -> float:
    """Bytes `Predictor` keeps besides the network while it forwards one scale."""
    flips = 2 if settings.flip else 1
    pixels = size[0] * size[1]
    images = flips * 3 * pixels * FLOAT_BYTES  # the scaled image and its flip
    if settings.mode == "slide":  # score buffers, window counts, the batch and its resized logits
        return (images + flips * num_classes * pixels * FLOAT_BYTES + 2 * pixels * 8
                + batch * (3 + 2 * num_classes) * item.pixels * FLOAT_BYTES)
    return images + flips * num_classes * math.ceil(pixels / DECODER_STRIDE**2) * FLOAT_BYTES
