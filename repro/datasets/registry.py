"""The dataset registry: name -> spec and layout, and `open_dataset`."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from repro.datasets import ade20k, cityscapes, cocostuff10k, lip, pascalcontext, voc, vspw
from repro.datasets.base import DatasetLayout, DatasetSpec, EvalDataset, missing_file_problems, note_once
from repro.datasets.palettes import ADE20K_COLOURS
from repro.errors import DatasetError
from repro.paths import dataset_env_var, resolve_dataset_root

if TYPE_CHECKING:  # numpy loads when a palette is drawn
    import numpy as np

LAYOUTS: dict[str, DatasetLayout] = {
    "ade20k": ade20k.ADE20kLayout(),
    "cityscapes": cityscapes.CityscapesLayout(),
    "cocostuff10k": cocostuff10k.COCOStuff10kLayout(),
    "lip": lip.LIPLayout(),
    "voc": voc.VOCLayout(),
    "pascalcontext59": pascalcontext.PascalContext59Layout(),
    "vspw": vspw.VSPWLayout(),
}

DATASETS: dict[str, DatasetSpec] = {name: layout.spec for name, layout in LAYOUTS.items()}

# Colours (RGB per class) of each dataset's own visualisations. VOC, Pascal-Context and LIP draw
# with VOC's bit-interleaved colour map (`bit_colour_map`); Cityscapes with cityscapesScripts'
# colour of each trainId's labelId; ADE20k with the MIT CSAIL benchmark's table (palettes.py).
# COCO-Stuff and VSPW publish no colour table (see palettes.py): they get the deterministic
# bit-interleaved map too, which is repro's choice, not theirs.
PALETTES: dict[str, tuple[tuple[int, int, int], ...] | None] = {
    "ade20k": ADE20K_COLOURS,
    "cityscapes": cityscapes.TRAINID_COLOURS,
    "cocostuff10k": None,
    "lip": None,
    "voc": None,
    "pascalcontext59": None,
    "vspw": None,
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
    """(num_classes, 3) uint8 RGB colours of a dataset's classes (see PALETTES)."""
    import numpy as np

    colours = PALETTES.get(name)
    count = DATASETS[name].num_classes
    return np.asarray(colours, dtype=np.uint8) if colours else bit_colour_map(count)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset name; a DatasetError (exit code 2) with suggestions otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(DATASETS), n=2, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise DatasetError(f"unknown dataset {name!r}; {hint}choose from {', '.join(DATASETS)}", exit_code=2) from None


def resolve(
    name: str, root: str | os.PathLike | None, split: str | None, *, must_exist: bool = True
) -> tuple[DatasetSpec, Path, str]:
    """(spec, dataset folder, split) with defaults filled in; unknown names raise (exit code 2)."""
    spec = get_spec(name)
    split = split or spec.default_split
    if split not in spec.splits:
        raise DatasetError(
            f"{spec.title} has no evaluation split {split!r}; choose from {', '.join(spec.splits)}", exit_code=2
        )
    root_path = Path(root).expanduser() if root else resolve_dataset_root(spec.name)
    if must_exist and not root_path.is_dir():
        raise DatasetError(
            f"{spec.title} folder {root_path} does not exist; download it with `repro fetch --dataset {name}`, "
            f"or say where it is: --dataset-root {name}=PATH, --data-root PATH or ${dataset_env_var(name)}"
        )
    return spec, root_path, split


def open_dataset(name: str, root: str | os.PathLike | None = None, split: str | None = None) -> EvalDataset:
    """One split of a dataset, checked for a complete layout (every image and label present).

    `root` is the dataset folder (default: repro.paths.resolve_dataset_root(name)); `split` defaults to
    the dataset's evaluation split. Raises DatasetError with one actionable line on a bad layout.
    """
    spec, root_path, split = resolve(name, root, split)
    layout = LAYOUTS[name]
    located = layout.locate(root_path, split)
    if not located.entries:
        raise DatasetError(
            f"{spec.title} {split} split under {root_path} lists no images; re-extract the dataset archive"
        )
    problems = missing_file_problems(located, spec.has_labels(split), spec.title)
    if problems:
        raise DatasetError(problems[0])
    for note in located.notes:  # e.g. a missing id list replaced by a folder listing
        note_once(note)
    return EvalDataset(spec, layout.rule, root_path, split, located)
