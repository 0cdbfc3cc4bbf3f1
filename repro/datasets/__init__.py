"""Evaluation datasets: every fact of each, layouts and label rules (upstream's test transform is
repro.inference.transforms). One module per dataset (its `SPEC`) and one line in registry.py.

    spec = DATASETS["ade20k"]                      # facts: classes, splits, counts, folder, sources, ...
    root = resolve_dataset_root("ade20k")          # where it is (--dataset-root, --data-root, ...)
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
    SplitSize,
    map_label,
    read_image,
    read_label,
    split_size,
)
from repro.datasets.check import CheckResult, SplitSummary, check_dataset
from repro.datasets.cityscapes import (
    CityscapesSubmissionWriter,
    submission_filename,
    trainid_to_labelid,
    write_cityscapes_submission,
)
from repro.datasets.registry import DATASETS, find_dataset, get_spec
from repro.datasets.roots import open_dataset, resolve_dataset_root

__all__ = [
    "DATASETS",
    "IGNORE",
    "CheckResult",
    "CityscapesSubmissionWriter",
    "DatasetSpec",
    "EvalDataset",
    "LabelError",
    "LabelRule",
    "Sample",
    "SplitSize",
    "SplitSummary",
    "check_dataset",
    "find_dataset",
    "get_spec",
    "map_label",
    "open_dataset",
    "read_image",
    "read_label",
    "resolve_dataset_root",
    "split_size",
    "submission_filename",
    "trainid_to_labelid",
    "write_cityscapes_submission",
]
