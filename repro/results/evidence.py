"""Per-image evidence recorded beside a result: the `<result stem>.evidence.npz` sidecar.

Arrays (numpy only, no pickle; strings as fixed-width unicode):
- `confusion` (C, C) int64: rows ground truth, columns prediction, over the pixels the metric
  counts (ignored label pixels excluded) — the same matrix `repro.metrics` scores;
- `image_ids` (N,) str, one row per image;
- `intersect`, `union`, `gt_area`, `pred_area` (N, C) int64: per-image counts over those pixels;
- `ignored` (N,) int64, optional: label pixels the metric skipped (ignore index or out of range).
Server (test-split) runs have no labels: `image_ids` and `pred_area` (every pixel) only.

The file is written atomically with a fixed zip timestamp, so the same evidence always gives the
same bytes and therefore the same sha256 (a resumed or multi-rank run can be compared to one
uninterrupted run by digest). `load` refuses a file whose sha256 differs from the one recorded.
Its metrics are `repro.metrics`' formulas applied to these counts (`Evidence.scores()`), so the
mIoU recomputed from a sidecar is the result's own number, bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from repro.errors import ReproError
from repro.fileio import atomic_path, file_sha256
from repro.metrics import Scores, compute_scores, nan_mean, ratio

FORMAT_VERSION = 1
_PER_IMAGE = ("intersect", "union", "gt_area")  # present exactly when labels were scored
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: identical content -> identical bytes -> identical sha256


def _int64(name: str, values, ndim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"evidence `{name}` must have {ndim} dimensions, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"evidence `{name}` must hold integers, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Evidence:
    """What one evaluation saw, image by image. Construct it with arrays; it checks their shapes."""

    image_ids: np.ndarray
    pred_area: np.ndarray
    confusion: np.ndarray | None = None
    intersect: np.ndarray | None = None
    union: np.ndarray | None = None
    gt_area: np.ndarray | None = None
    ignored: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.image_ids)
        ids = ids.astype(str) if ids.size else np.zeros((0,), dtype="<U1")
        if ids.ndim != 1:
            raise ValueError(f"evidence `image_ids` must be one-dimensional, got shape {ids.shape}")
        object.__setattr__(self, "image_ids", ids)
        pred = _int64("pred_area", self.pred_area, 2)
        if pred.shape[0] != len(ids):
            raise ValueError(f"evidence has {len(ids)} image ids but {pred.shape[0]} pred_area rows")
        object.__setattr__(self, "pred_area", pred)
        labelled = [self.confusion is not None] + [getattr(self, n) is not None for n in _PER_IMAGE]
        if any(labelled) and not all(labelled):
            raise ValueError("evidence needs confusion, intersect, union and gt_area together (or none: a server run)")
        if self.confusion is not None:
            self._check_labelled(pred.shape)
        if self.ignored is not None:
            ignored = _int64("ignored", self.ignored, 1)
            if ignored.shape != (len(ids),):
                raise ValueError(f"evidence `ignored` must have shape ({len(ids)},), got {ignored.shape}")
            object.__setattr__(self, "ignored", ignored)

    def _check_labelled(self, shape: tuple[int, int]) -> None:
        confusion = _int64("confusion", self.confusion, 2)
        if confusion.shape != (shape[1], shape[1]):
            raise ValueError(f"evidence `confusion` must be ({shape[1]}, {shape[1]}), got {confusion.shape}")
        object.__setattr__(self, "confusion", confusion)
        for name in _PER_IMAGE:
            array = _int64(name, getattr(self, name), 2)
            if array.shape != shape:
                raise ValueError(f"evidence `{name}` must have shape {shape}, got {array.shape}")
            object.__setattr__(self, name, array)

    # -- shape -------------------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return self.pred_area.shape[1]

    @property
    def has_labels(self) -> bool:
        """False for a server run (prediction histogram only)."""
        return self.confusion is not None

    def __len__(self) -> int:
        return self.num_images

    # -- metrics: repro.metrics' formulas over the recorded counts ------------------------------
    def _labelled(self) -> np.ndarray:
        if self.confusion is None:
            raise ReproError("this evidence comes from a server run (no labels): it has no IoU")
        return self.confusion

    def scores(self) -> Scores:
        """Dataset-wide IoU, mIoU, aAcc, mAcc, fwIoU and ground-truth shares (fractions; NaN where
        undefined) of the confusion matrix: the numbers the result records, by the same code."""
        return compute_scores(self._labelled())

    def miou(self) -> float:
        return self.scores().miou

    def image_iou(self) -> np.ndarray:
        """(N, C) IoU per image; NaN where a class is neither in that image's labels nor predicted."""
        self._labelled()
        return ratio(self.intersect, self.union)

    def image_miou(self) -> np.ndarray:
        """(N,) nan-mean over the classes present in each image (label or prediction)."""
        return nan_mean(self.image_iou(), axis=1)

    def image_error(self) -> np.ndarray:
        """(N,) wrongly predicted counted pixels per image."""
        self._labelled()
        return self.gt_area.sum(axis=1) - self.intersect.sum(axis=1)

    def totals_match(self) -> bool:
        """The per-image rows sum exactly to the totals the confusion matrix gives."""
        if self.confusion is None:
            return True
        m = self.confusion
        tp, gt, pred = np.diag(m), m.sum(axis=1), m.sum(axis=0)
        return bool(
            np.array_equal(self.intersect.sum(axis=0), tp)
            and np.array_equal(self.gt_area.sum(axis=0), gt)
            and np.array_equal(self.pred_area.sum(axis=0), pred)
            and np.array_equal(self.union.sum(axis=0), gt + pred - tp)
        )

    # -- order and merging ---------------------------------------------------------------------
    def select(self, indices: Sequence[int] | np.ndarray) -> Evidence:
        """The rows `indices` (the dataset-wide confusion is kept as it is)."""
        index = np.asarray(indices, dtype=np.int64)
        rows = {n: getattr(self, n)[index] for n in ("image_ids", "pred_area", *_PER_IMAGE, "ignored")
                if getattr(self, n) is not None}
        return replace(self, **rows)

    def sorted_by_id(self) -> Evidence:
        """Rows in image-id order: what resume, ranks and shards agree on."""
        return self.select(np.argsort(self.image_ids, kind="stable"))

    @staticmethod
    def merge(parts: Sequence[Evidence]) -> Evidence:
        """One evidence from disjoint parts (ranks, shards, resumed chunks), rows sorted by id."""
        if not parts:
            raise ValueError("nothing to merge")
        classes = {p.num_classes for p in parts}
        labels = {p.has_labels for p in parts}
        optional = {p.ignored is not None for p in parts}
        if len(classes) > 1 or len(labels) > 1 or len(optional) > 1:
            raise ValueError("cannot merge evidence of different class counts or kinds")
        ids = np.concatenate([p.image_ids for p in parts])
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"image {str(unique[counts > 1][0])!r} appears in more than one part")
        joined = {n: np.concatenate([getattr(p, n) for p in parts])
                  for n in ("pred_area", *_PER_IMAGE, "ignored") if getattr(parts[0], n) is not None}
        if parts[0].has_labels:
            joined["confusion"] = np.sum([p.confusion for p in parts], axis=0, dtype=np.int64)
        return Evidence(image_ids=ids, **joined).sorted_by_id()

    # -- files ---------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        names = ("image_ids", "pred_area", "confusion", *_PER_IMAGE, "ignored")
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        out["format"] = np.asarray(FORMAT_VERSION, dtype=np.int64)
        return out

    def save(self, path: str | Path) -> str:
        """Write the sidecar atomically; returns its sha256 (hex) for the result JSON."""
        data = self.to_bytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def to_bytes(self) -> bytes:
        """The sidecar's bytes: the same evidence always gives the same bytes."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in self.arrays().items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, member.getvalue())
        return buffer.getvalue()

    @staticmethod
    def load(path: str | Path, sha256: str | None = None) -> Evidence:
        return load(path, sha256)


def load(path: str | Path, sha256: str | None = None) -> Evidence:
    """Read a sidecar; with `sha256`, refuse a file whose digest differs (one-line ReproError)."""
    path = Path(path)
    if not path.is_file():
        raise ReproError(f"evidence file {path} is missing; re-run `repro eval` to record it")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256.lower():
            raise ReproError(
                f"evidence file {path.name} does not match its result (sha256 {actual[:12]}…, "
                f"recorded {sha256[:12]}…): it was replaced or damaged; re-run `repro eval --force`"
            )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ReproError(f"evidence file {path} is unreadable ({type(err).__name__}): re-run `repro eval --force`") from None
    version = int(np.asarray(arrays.pop("format", FORMAT_VERSION)).reshape(-1)[0])
    if version > FORMAT_VERSION:
        raise ReproError(f"evidence file {path.name} has format {version}; this repro reads up to {FORMAT_VERSION}: upgrade repro")
    try:
        known = {f.name for f in fields(Evidence)}
        return Evidence(**{k: v for k, v in arrays.items() if k in known})
    except (TypeError, ValueError) as err:
        raise ReproError(f"evidence file {path.name} is malformed: {err}") from None


merge = Evidence.merge
