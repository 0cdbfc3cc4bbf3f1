"""The dataset registry: one line per dataset module, and what is looked up by name.

Adding a dataset: write `repro/datasets/<name>.py` with its `SPEC` (facts, label rule, layout)
and add its `SPEC` below. Everything else (the manifest's dataset check, the models' class
counts, the plan, the checks of `repro explain`, `repro fetch`, the CLI's lists) reads it here.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from repro.datasets import ade20k, cityscapes, cocostuff10k, lip, pascalcontext, voc, vspw
from repro.datasets.base import DatasetSpec
from repro.errors import DatasetError

if TYPE_CHECKING:  # numpy loads when a palette is drawn
    import numpy as np

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        ade20k.SPEC,
        cityscapes.SPEC,
        cocostuff10k.SPEC,
        lip.SPEC,
        voc.SPEC,
        pascalcontext.SPEC,
        vspw.SPEC,
    )
}


def bit_colour_map(count: int) -> np.ndarray:
    """VOC's colour map: the bits of the class index spread over R, G and B, high bits first."""
    import numpy as np

    colours = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colours


def palette(name: str) -> np.ndarray:
    """(num_classes, 3) uint8 RGB colours of a dataset's classes: the colours its authors publish
    (`DatasetSpec.colours`: ADE20k's, Cityscapes'), else VOC's bit-interleaved colour map, which
    VOC, Pascal-Context and LIP draw with, and which is repro's choice for COCO-Stuff and VSPW
    (they publish no table, see palettes.py)."""
    import numpy as np

    spec = DATASETS[name]
    return np.asarray(spec.colours, dtype=np.uint8) if spec.colours else bit_colour_map(spec.num_classes)


def unknown_dataset(name: str, what: str = "dataset") -> DatasetError:
    """The one error for a dataset name that is not known (exit code 2), with suggestions."""
    close = difflib.get_close_matches(str(name).strip().lower(), list(DATASETS), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return DatasetError(f"unknown {what} {name!r}; {hint}choose from {', '.join(DATASETS)}", exit_code=2)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset name as repro writes it; `unknown_dataset` otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_dataset(name) from None


def find_dataset(name: str, what: str = "dataset", *, aliases: bool = False) -> DatasetSpec:
    """The spec of a dataset named by a user: any case, blanks ignored, and with `aliases` one of
    its other spellings (`repro fetch --dataset pc59`); `unknown_dataset` (naming `what`) otherwise."""
    key = str(name).strip().lower().replace(" ", "")
    for spec in DATASETS.values():
        if key == spec.name or (aliases and key in spec.aliases):
            return spec
    raise unknown_dataset(name, what)


def dataset_of_class_count(count: int) -> DatasetSpec | None:
    """The dataset a checkpoint with `count` classes was most likely trained on (None: no such)."""
    return next((spec for spec in DATASETS.values() if spec.num_classes == count), None)
