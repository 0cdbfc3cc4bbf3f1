"""`check_dataset`: is a dataset folder complete and encoded the way upstream expects?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from repro.datasets.base import DatasetSpec, EvalDataset, LabelError, missing_file_problems
from repro.datasets.roots import resolve
from repro.errors import DatasetError

DEFAULT_SAMPLE = 20


@dataclass
class SplitSummary:
    """What `check_dataset` found for one split."""

    split: str
    count: int | None = None  # images (videos for VSPW) found; None when the layout was unusable
    expected: int | None = None
    unit: str = "images"
    frames: int | None = None  # VSPW: frames over all videos
    labels_sampled: int = 0
    images_sampled: int = 0
    classes_seen: int = 0  # distinct classes over the sampled labels
    ignored_fraction: float | None = None  # share of ignored pixels in the sampled labels
    has_labels: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class CheckResult(list):
    """The problems found (a list of one-line strings, empty when all is well) plus a summary.

    Attributes: dataset, root, splits (list of SplitSummary), notes (informational lines such as
    an id list replaced by a folder listing, or an accepted partial dataset).
    """

    def __init__(self, dataset: str, root: Path):
        super().__init__()
        self.dataset = dataset
        self.root = root
        self.splits: list[SplitSummary] = []
        self.notes: list[str] = []

    @property
    def ok(self) -> bool:
        return not self


def _sample_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over 0..n-1 (deterministic, first and last included)."""
    if n == 0 or k <= 0:
        return []
    import numpy as np  # here, not at the top: importing repro.datasets stays light

    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, k)).round()})


def _sample_pass(dataset: EvalDataset, summary: SplitSummary, sample: int) -> list[str]:
    """Read a spread sample of images and labels as the evaluation will; one line per kind of problem."""
    import numpy as np

    grouped: dict[str, list[str]] = {}
    classes: set[int] = set()
    ignored = total = 0
    indices = _sample_indices(len(dataset), sample)
    for i in indices:
        try:
            item = dataset[i]
        except LabelError as err:
            grouped.setdefault(f"label:{err.kind}", []).append(str(err))
            continue
        except DatasetError as err:
            grouped.setdefault("sample", []).append(str(err))
            continue
        summary.images_sampled += 1
        if item.label is not None:
            summary.labels_sampled += 1
            values, counts = np.unique(item.label, return_counts=True)
            classes.update(int(v) for v in values if v >= 0)
            ignored += int(counts[values < 0].sum())
            total += int(item.label.size)
    summary.classes_seen = len(classes)
    summary.ignored_fraction = ignored / total if total else None
    problems = []
    for messages in grouped.values():
        suffix = f" [{len(messages)} of {len(indices)} sampled files]" if len(messages) > 1 else ""
        problems.append(messages[0] + suffix)
    if summary.labels_sampled and total and ignored == total:
        problems.append(
            f"every pixel of the {summary.labels_sampled} sampled {dataset.spec.title} {dataset.split} labels "
            f"is ignored; the labels are not in the encoding upstream expects ({dataset.spec.label_encoding})"
        )
    return problems


def _check_split(spec: DatasetSpec, root_path: Path, split_name: str, notes: list[str], allow_subset: bool,
                 sample: int) -> SplitSummary:
    """Count, file and sampled-label checks of one split; its problems in the summary, notes appended to `notes`."""
    summary = SplitSummary(split_name, expected=spec.splits[split_name], unit=spec.count_unit)
    summary.has_labels = spec.has_labels(split_name)
    try:
        located = spec.layout.locate(root_path, split_name)
    except DatasetError as err:
        summary.problems.append(str(err))
        return summary
    notes += located.notes
    size = spec.size(split_name, located)
    summary.count = size.found
    if located.videos is not None:
        summary.frames = len(located.entries)
    if not located.entries:
        summary.problems.append(
            f"{spec.title} {split_name} split under {root_path} lists no images; re-extract the dataset archive"
        )
        return summary
    if not size.complete:
        line = f"{spec.title} {split_name} has {summary.count} {summary.unit} but the official split has {summary.expected}"
        if allow_subset:
            notes.append(f"{line} (partial dataset accepted)")
        else:
            summary.problems.append(
                f"{line}: the dataset is incomplete or its id list is wrong; re-extract the archive "
                f"(or accept a partial dataset with --allow-subset)"
            )
    missing = missing_file_problems(located, summary.has_labels, spec.title)
    summary.problems += missing
    if not missing:  # with files missing, reading a sample would only repeat them
        dataset = EvalDataset(spec, root_path, split_name, located)
        summary.problems += _sample_pass(dataset, summary, sample)
    return summary


def check_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    *,
    allow_subset: bool = False,
    sample: int = DEFAULT_SAMPLE,
) -> CheckResult:
    """Check one dataset folder: layout, image count per split, every image has its label, and a
    label-value pass over `sample` labels per split (read exactly as the evaluation reads them).

    Returns a CheckResult: a list of one-line problems (empty when fine) with `.splits` and `.notes`.
    A split whose image count differs from the official one is a problem unless `allow_subset`
    (a mini or partial dataset), in which case it becomes a note. Unknown dataset or split names
    raise DatasetError; a missing root folder is reported as a problem.
    """
    spec, root_path, _ = resolve(name, root, split, must_exist=False)
    if not root_path.is_dir():
        result = CheckResult(spec.name, root_path)
        try:
            resolve(name, root, split)
        except DatasetError as err:  # the one-line "folder does not exist" message
            result.append(str(err))
        return result
    result = CheckResult(spec.name, root_path)
    for split_name in [split] if split else list(spec.splits):
        result.splits.append(_check_split(spec, root_path, split_name, result.notes, allow_subset, sample))
    for summary in result.splits:
        result.extend(summary.problems)
    return result
