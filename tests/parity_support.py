"""Shared by the parity tests and tools/parity_table.py: upstream-keyed filled checkpoints and
the comparison of a bundled segmentor with the fixtures of tests/fixtures/parity/.

Fixture folders: `all/` (55 configs, float32, upstream's current forward = "upstream-head"),
`all64/` (the same in float64: model filled, then `.double()`), `era/` and `era64/` (the four
HRNet configs with the stem they were trained with = "training-era"). FILL.md has the fill.
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from repro.models import build_architecture, deterministic_fill, load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
PARITY_DIR = FIXTURES / "parity"
KEYS_FILE = FIXTURES / "upstream_state_dict_keys.json.gz"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}
# Fixture folder, the forward it was made with, and the bar (max |ours - ref| / max |ref|).
FIXTURE_SETS = {
    "all": ("upstream-head", torch.float32, 1e-4),
    "all64": ("upstream-head", torch.float64, 1e-9),
    "era": ("training-era", torch.float32, 1e-4),
    "era64": ("training-era", torch.float64, 1e-9),
}


@lru_cache(maxsize=1)
def upstream_keys() -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    with gzip.open(KEYS_FILE, "rt") as f:
        raw = json.load(f)
    return {config: [(k, tuple(shape), dtype) for k, shape, dtype in rows] for config, rows in raw.items()}


def upstream_filled_checkpoint(model: torch.nn.Module, config: str) -> dict:
    """Upstream's published format ({'model': state_dict}) with every upstream key, filled per FILL.md.

    Integer tensors keep the values the model builds (training-only ones, absent from the model,
    are zeros).
    """
    own = model.state_dict()
    template = {
        key: own[key] if key in own else torch.zeros(shape, dtype=DTYPES[dtype])
        for key, shape, dtype in upstream_keys()[config]
    }
    return {"model": deterministic_fill(template)}


def fixture_configs(fixture_set: str) -> list[str]:
    return sorted(p.stem for p in (PARITY_DIR / fixture_set).glob("*.npz"))


def filled_model(config: str, variant: str) -> torch.nn.Module:
    """The float32 segmentor of `config` / `variant` with the fill loaded through load_checkpoint."""
    model = build_architecture(config, variant=variant)
    load_checkpoint(model, upstream_filled_checkpoint(model, config))
    return model


@dataclass
class Comparison:
    error: float  # max |ours - ref|
    scale: float  # max |ref|
    bar: float  # allowed error / scale

    @property
    def relative(self) -> float:
        return self.error / self.scale

    @property
    def ok(self) -> bool:
        return self.error <= self.bar * self.scale


def compare(model: torch.nn.Module, config: str, fixture_set: str) -> Comparison:
    """Run `model` (float32, filled; converted to float64 on a copy for the 64 sets) on the
    fixture's input and compare with its logits."""
    _, dtype, bar = FIXTURE_SETS[fixture_set]
    fixture = np.load(PARITY_DIR / fixture_set / f"{config}.npz")
    if dtype == torch.float64:
        model = copy.deepcopy(model).double()
    with torch.no_grad():
        logits = model(torch.from_numpy(fixture["input"]).to(dtype))
    reference = fixture["logits"]
    if tuple(logits.shape) != tuple(reference.shape):
        raise AssertionError(f"{config}: logits {tuple(logits.shape)}, fixture {tuple(reference.shape)}")
    assert logits.dtype == dtype
    error = float(np.abs(logits.numpy().astype(np.float64) - reference.astype(np.float64)).max())
    return Comparison(error, float(np.abs(reference).max()), bar)
