"""Evaluation datasets: layouts and label rules (upstream's test transform is repro.inference.transforms).

    spec = DATASETS["ade20k"]                      # facts: classes, splits, counts, flip pairs
    ds = open_dataset("ade20k", root, "val")       # EvalDataset: len(ds), ds.ids, ds[i] -> Sample
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
    "open_dataset",
    "read_image",
    "read_label",
    "submission_filename",
    "trainid_to_labelid",
    "write_cityscapes_submission",
]
