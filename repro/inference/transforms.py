"""Upstream's test-time image transform: Resize -> Normalize -> ToTensor (no padding).

The label is never resized at test time; predictions are resized to the original image instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import torch

from repro.inference.geometry import resize_output_size  # the resize rule, which the plan reads too (no torch there)


def resize_image(image: np.ndarray, output_size: Sequence[int], keep_ratio: bool) -> np.ndarray:
    """Bilinear resize of the uint8 BGR image (OpenCV's 8-bit path, as upstream)."""
    out_h, out_w = resize_output_size(image.shape[0], image.shape[1], output_size, keep_ratio)
    return cv2.resize(image, dsize=(out_w, out_h), interpolation=cv2.INTER_LINEAR)


def normalize_image(image_bgr: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float32 HxWx3 RGB, (x - mean) * (1/std) with upstream's exact cv2 call sequence.

    The cv2 calls are kept (rather than numpy arithmetic) because their float32/float64 mix
    differs from `(x - mean) / std` by up to one ulp, and upstream's numbers came from them.
    """
    image = image_bgr.astype(np.float32)
    mean64 = np.asarray(mean, dtype=np.float64).reshape(1, -1)
    std_inv64 = 1 / np.asarray(std, dtype=np.float64).reshape(1, -1)
    cv2.cvtColor(image, cv2.COLOR_BGR2RGB, image)
    cv2.subtract(image, mean64, image)
    cv2.multiply(image, std_inv64, image)
    return image


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def test_transform(image_bgr: np.ndarray, protocol: Any) -> torch.Tensor:
    """(3, H', W') float32 tensor fed to the model, from a BGR uint8 image and a protocol.

    `protocol` is any object (or dict) with `.resize.output_size`, `.resize.keep_ratio`,
    `.normalize.mean` and `.normalize.std`, e.g. a manifest Protocol.
    """
    resize, normalize = _field(protocol, "resize"), _field(protocol, "normalize")
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"test_transform expects a BGR uint8 HxWx3 image, got {image_bgr.dtype} {image_bgr.shape}")
    resized = resize_image(image_bgr, _field(resize, "output_size"), bool(_field(resize, "keep_ratio")))
    return to_chw_tensor(normalize_image(resized, _field(normalize, "mean"), _field(normalize, "std")))


# pytest would otherwise try to collect `test_transform` when a test module imports it by name.
test_transform.__test__ = False  # type: ignore[attr-defined]
