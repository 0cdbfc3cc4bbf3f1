"""Evaluation datasets: layouts, label rules and upstream's test transform.

    spec = DATASETS["ade20k"]                      # facts: classes, splits, counts, flip pairs
    ds = open_dataset("ade20k", root, "val")       # EvalDataset: len(ds), ds.ids, ds[i] -> Sample
    x = test_transform(ds[0].image, protocol)      # (3, H', W') float32, resize + normalize
    problems = check_dataset("ade20k", root)       # [] when the folder is complete and well encoded
"""

from __future__ import annotations

from repro.datasets.base import (
    IGNORE,
    DatasetSpec,
    EvalDataset,
    LabelError,
    LabelRule,
    Sample,
    map_label,
    read_image,
    read_label,
)
from repro.datasets.check import CheckResult, SplitSummary, check_dataset
from repro.datasets.cityscapes import (
    CityscapesSubmissionWriter,
    submission_filename,
    trainid_to_labelid,
    write_cityscapes_submission,
)
from repro.datasets.registry import DATASETS, LAYOUTS, get_spec, open_dataset

# The transforms need torch: imported on first use, so that layouts and checks (`repro status`,
# `repro data list`) start without it.
_TRANSFORMS = ("normalize_image", "resize_image", "resize_output_size", "test_transform", "to_chw_tensor")


def __getattr__(name: str):
    if name in _TRANSFORMS:
        from repro.datasets import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'repro.datasets' has no attribute {name!r}")

__all__ = [
    "DATASETS",
    "IGNORE",
    "LAYOUTS",
    "CheckResult",
    "CityscapesSubmissionWriter",
    "DatasetSpec",
    "EvalDataset",
    "LabelError",
    "LabelRule",
    "Sample",
    "SplitSummary",
    "check_dataset",
    "get_spec",
    "map_label",
    "normalize_image",
    "open_dataset",
    "read_image",
    "read_label",
    "resize_image",
    "resize_output_size",
    "submission_filename",
    "test_transform",
    "to_chw_tensor",
    "trainid_to_labelid",
    "write_cityscapes_submission",
]
