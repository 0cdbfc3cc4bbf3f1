"""The deterministic fill of the parity fixtures (shared/parity/FILL.md).

Every floating-point tensor is set from its upstream state-dict key and shape alone, so a model
whose names match upstream receives exactly the weights the reference model had. Integer tensors
(num_batches_tracked, relative_position_index, ...) keep the values the model builds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import numpy as np
import torch


def fill_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 tensor FILL.md assigns to `key` with `shape`."""
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    u = rng.random(size=shape, dtype=np.float64)
    ndim = len(shape)
    if key.endswith("memory") and ndim == 2 and shape[1] == 2:  # MCIBI++ per-class (mean, std)
        v = np.empty_like(u)
        v[:, 0] = 0.2 * u[:, 0] - 0.1
        v[:, 1] = 0.5 + u[:, 1]
    elif key.endswith("running_var"):
        v = 0.5 + u
    elif key.endswith("running_mean"):
        v = 0.2 * u - 0.1
    elif ndim >= 2:
        fan_in = math.prod(shape[1:])
        u *= 2.0
        u -= 1.0
        u *= math.sqrt(3.0 / fan_in)
        v = u
    elif ndim == 1 and key.endswith("weight"):
        v = 0.5 + u
    elif ndim == 1:
        v = 0.2 * u - 0.1
    else:
        v = u
    return torch.from_numpy(v.astype(np.float32, copy=False))


def deterministic_fill(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A filled copy of `state_dict`: floating tensors replaced, integer tensors kept.

    `prefix` is prepended to each key when deriving the seed (e.g. "backbone_net." to fill a
    backbone on its own exactly as inside the full segmentor).
    """
    filled = {}
    for key, value in state_dict.items():
        if value.is_floating_point():
            filled[key] = fill_tensor(prefix + key, tuple(value.shape))
        else:
            filled[key] = value.clone()
    return filled


def fill_model(model: torch.nn.Module, prefix: str = "") -> torch.nn.Module:
    """Load the deterministic fill into `model` in place (keys as the model names them)."""
    model.load_state_dict(deterministic_fill(model.state_dict(), prefix), strict=True)
    return model
