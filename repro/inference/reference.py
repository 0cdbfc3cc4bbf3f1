"""Reference: a plain transcription of upstream's test loop (one crop at a time, CPU-side
resizes), the yardstick for `repro.inference.predictor.Predictor` in tests, `repro selftest` and
`benchmarks/eval_speed.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from repro.inference.geometry import TTASettings


def _reference_inference(model, images, settings: TTASettings, num_classes: int, device) -> torch.Tensor:
    images = images.to(device=device, dtype=torch.float32)
    if settings.mode == "whole":
        logits = model(images).float()
        return F.softmax(logits, dim=1) if settings.probs_before_resize else logits
    stride_h, stride_w = settings.stride
    crop_h, crop_w = settings.crop_size
    batch, _, height, width = images.shape
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = images.new_zeros((batch, num_classes, height, width))
    count = images.new_zeros((batch, 1, height, width))
    for row in range(rows):
        for col in range(cols):
            x1, y1 = col * stride_w, row * stride_h
            x2, y2 = min(x1 + crop_w, width), min(y1 + crop_h, height)
            x1, y1 = max(x2 - crop_w, 0), max(y2 - crop_h, 0)
            crop = images[:, :, y1:y2, x1:x2]
            logits = F.interpolate(model(crop).float(), size=crop.shape[2:], mode="bilinear", align_corners=False)
            if settings.probs_before_resize:
                logits = F.softmax(logits, dim=1)
            total += F.pad(logits, (int(x1), int(width - x2), int(y1), int(height - y2)))
            count[:, :, y1:y2, x1:x2] += 1
    assert (count == 0).sum() == 0
    return total / count


@torch.inference_mode()
def reference_predict(
    model: torch.nn.Module,
    image: torch.Tensor,
    protocol: Any,
    num_classes: int,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    device: str | torch.device = "cpu",
    *,
    output_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Upstream's auginference + test-loop averaging, step for step: slow, the yardstick for
    `Predictor` in tests and `benchmarks/eval_speed.py`. Returns (C, H, W) float32 on the CPU."""
    import numpy as np

    settings = TTASettings.from_protocol(protocol)
    pairs = flip_pairs if flip_pairs is not None else settings.flip_pairs
    images = (image if image.dim() == 4 else image.unsqueeze(0)).cpu().float()
    out_h, out_w = (int(v) for v in (output_size or images.shape[-2:]))
    outputs = []
    for scale in settings.scales:
        images_scale = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        outputs.append(_reference_inference(model, images_scale, settings, num_classes, device).cpu())
        if settings.flip:
            flipped_input = torch.from_numpy(np.flip(images_scale.numpy(), axis=3).copy())
            flipped = _reference_inference(model, flipped_input, settings, num_classes, device)
            if pairs:
                source = flipped.clone()
                for a, b in pairs:
                    flipped[:, a] = source[:, b]
                    flipped[:, b] = source[:, a]
            outputs.append(torch.from_numpy(np.flip(flipped.cpu().numpy(), axis=3).copy()))
    resized = [F.interpolate(o, size=(out_h, out_w), mode="bilinear", align_corners=False) for o in outputs]
    return (sum(resized) / len(resized))[0]
