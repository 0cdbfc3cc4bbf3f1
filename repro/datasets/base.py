"""Shared machinery of the evaluation datasets: spec, samples, label reading and mapping.

Every dataset module describes (1) the facts of the dataset (`DatasetSpec`: names, folder and
markers, classes, splits and official counts, what the plan, the checks and fetch need to know),
(2) how its raw label files encode classes (`LabelRule`) and (3) where files live
(`DatasetLayout`); its spec holds all three, and one line of `repro.datasets.registry` adds it.
This module turns them into an `EvalDataset` that hands out exactly what upstream's test loop
hands to its metric: the BGR uint8 image read with cv2 and an int64 label map in which every
ignored or out-of-range pixel is -1.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

from repro.datasets.sources import Source
from repro.errors import DatasetError

if TYPE_CHECKING:  # numpy and PIL load on first read: `repro status` counts files without them
    import numpy as np

logger = logging.getLogger("repro.datasets")

IGNORE = -1
# LUT sentinel for raw values upstream would reject with its invalid-label assertion.
_INVALID = -2
RGB = tuple[int, int, int]
# What `repro explain` assumes of a dataset that says nothing else (DatasetSpec's defaults).
USUAL_IGNORE_SHARE = 0.10
WRONG_ENCODING_HINT = "labels not in the encoding the dataset expects"


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Every fact of one evaluation dataset (no file-system access): its module's `SPEC`."""

    name: str  # the one spelling used by manifest rows, options and result files
    title: str  # how people write it
    num_classes: int
    class_names: tuple[str, ...]
    folder: str  # folder under the data root where `repro fetch` puts it (upstream's archive layout)
    # A folder of this dataset holds every path of at least one of these sets (one set per layout
    # the reader accepts): how it is recognised whatever its name, and found in an archive.
    markers: tuple[tuple[str, ...], ...]
    splits: Mapping[str, int]  # split -> official count, in `count_unit`
    default_split: str
    # A typical original image (height, width): the plan's passes when the folder is not there
    # to look at (only the shape matters where the protocol keeps the aspect ratio).
    typical_image_size: tuple[int, int]
    layout: DatasetLayout
    rule: LabelRule
    count_unit: Literal["images", "videos"] = "images"
    images_per_unit: float = 1.0  # images per video: the plan's estimate when the folder is not there
    fixed_image_size: bool = False  # every image has the same size (the plan's passes are exact)
    server_splits: frozenset[str] = frozenset()  # splits without public labels (server-scored)
    flip_pairs: tuple[tuple[int, int], ...] = ()  # channels swapped when a prediction is flipped
    label_encoding: str = ""  # one line, shown by `repro data list`
    # Rough share of ignored label pixels in the official evaluation labels (void, "other",
    # boundaries), and what a far larger share usually means: `repro explain`'s ignore check.
    usual_ignore_share: float = USUAL_IGNORE_SHARE
    wrong_encoding_hint: str = WRONG_ENCODING_HINT
    colours: tuple[RGB, ...] | None = None  # the authors' RGB per class; None: `bit_colour_map`
    sources: tuple[Source, ...] = ()  # where `repro fetch` gets it, tried in order
    manual: str = ""  # the manual steps (`repro fetch --dataset NAME --manual`)
    aliases: tuple[str, ...] = ()  # other spellings `repro fetch --dataset` accepts

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if self.colours is not None and len(self.colours) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.colours)} colours for {self.num_classes} classes")
        object.__setattr__(self, "splits", dict(self.splits))  # plain dict: picklable for worker processes

    def has_labels(self, split: str) -> bool:
        return split not in self.server_splits

    def size(self, split: str, found: Any) -> SplitSize:
        """`found` (an EvalDataset or a layout's Located) against the official size of `split`."""
        return split_size(found, self.splits.get(split), self.count_unit)

    def expected_images(self, split: str) -> int | None:
        """Images of the official split (an estimate where it is counted in videos)."""
        official = self.splits.get(split)
        return None if official is None else round(official * self.images_per_unit)

    def prediction_name(self, sample_id: str) -> str:
        """Where `--save-predictions` writes the prediction of `sample_id`, relative to its
        folder: the path of the sample's label file under the split's label folder, as a PNG
        (so a prediction folder lines up with the ground-truth folder file by file)."""
        return str(PurePosixPath(self.layout.label_name(sample_id)).with_suffix(".png"))


@dataclass(frozen=True)
class SplitSize:
    """A dataset folder's size for one split against the official one, in the official unit."""

    found: int
    official: int | None  # None: no official count known, so never a subset
    unit: str = "images"

    @property
    def subset(self) -> bool:
        """Fewer than the official split: a run is partial (refused unless allowed)."""
        return self.official is not None and self.found < self.official

    @property
    def complete(self) -> bool:
        """Exactly the official split (what `repro status` and `repro data check` ask)."""
        return self.official is None or self.found == self.official

    def describe(self) -> str:
        """'3 of the official 10000 images'."""
        return f"{self.found} of the official {self.official} {self.unit}"

    def refusal(self, dataset: str) -> str:
        """Why a run of a subset folder does not start (the plan's and the engine's line)."""
        return f"{dataset} has {self.describe()}: pass --allow-subset to evaluate it anyway (partial, never compared)"


def split_size(found: Any, official: int | None, unit: str = "images") -> SplitSize:
    """The size of `found` in the unit of the official count: its videos (`found.videos`, video ->
    frames) where the split is counted in videos, else its images (`len(found)`). `found` is an
    EvalDataset, a layout's Located, or anything with len() (a test's dataset)."""
    videos = getattr(found, "videos", None)
    count = len(videos) if unit == "videos" and videos is not None else len(found)
    return SplitSize(count, official, unit)


@dataclass
class Sample:
    """One evaluation sample, as upstream's test loop sees it."""

    id: str
    image: np.ndarray  # BGR uint8 HxWx3
    label: np.ndarray | None  # int64 HxW, ignore = -1; None for server-scored splits
    image_path: Path
    label_path: Path | None = None


@dataclass(frozen=True)
class Entry:
    id: str
    image_path: Path
    label_path: Path | None


class LabelError(DatasetError):
    """A label file that cannot be read the way upstream reads it (wrong encoding or values).

    `kind` groups equal problems so that `repro data check` reports each kind once.
    """

    def __init__(self, message: str, kind: str, path: Path | None = None):
        super().__init__(message)
        self.kind = kind
        self.path = path


@dataclass(frozen=True)
class LabelRule:
    """How one dataset's raw label values become class indices.

    reader: 'cv2' (cv2 grayscale PNG, every upstream dataset but VSPW), 'pil' (palette indices
    via PIL, VSPW) or 'mat' (scipy .mat, key `mat_key`, COCO-Stuff-10k).
    table: upstream's clsid2label with ignore written as -1; raw values that are not keys keep
    their value when it is a class index. None means no table and no validity check (LIP):
    every value outside [0, num_classes) is ignored, as upstream's test loop does.
    palette_as_indices: a palette ('P') PNG is read as its indices with PIL (official VOC masks)
    instead of being refused.
    """

    reader: Literal["cv2", "pil", "mat"]
    num_classes: int
    table: Mapping[int, int] | None = None
    palette_as_indices: bool = False
    mat_key: str = "S"
    # What to do about values the dataset does not define: a sentence (`bad_value_text`), or one
    # chosen from the sorted bad raw values (`bad_value_hint`, where the values tell the mix-up).
    bad_value_text: str = "re-extract the labels from the original archive"
    bad_value_hint: Callable[[Sequence[int]], str] | None = None

    def class_values(self) -> np.ndarray:
        """The raw label value of each class (int64, index = class): the inverse of the mapping,
        so a prediction written with it compares directly with the dataset's own label files
        (ADE20k's reduced classes +1, Cityscapes trainIds as labelIds). Where several raw values
        give one class, the smallest."""
        import numpy as np

        values = np.arange(self.num_classes, dtype=np.int64)
        for raw, cls in sorted((self.table or {}).items(), reverse=True):
            if 0 <= cls < self.num_classes:
                values[cls] = raw
        return values

    def lookup(self, low: int, high: int) -> np.ndarray:
        """Mapped value of every raw value in [low, high] (index = raw - low)."""
        import numpy as np

        raw = np.arange(low, high + 1, dtype=np.int64)
        mapped = np.where((raw >= 0) & (raw < self.num_classes), raw, _INVALID if self.table is not None else IGNORE)
        if self.table is not None:
            for key, value in self.table.items():
                if low <= key <= high:
                    mapped[key - low] = value
        return mapped


def reduce_zero_table(num_classes: int, extra_ignored: Sequence[int] = ()) -> dict[int, int]:
    """0 (and `extra_ignored`) -> ignore, k -> k-1 for k in 1..num_classes."""
    table = {0: IGNORE, **{v: IGNORE for v in extra_ignored}}
    table.update({k: k - 1 for k in range(1, num_classes + 1)})
    return table


# ---------------------------------------------------------------------------------------------
# Reading files


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 HxWx3, read exactly as upstream (cv2.imread, IMREAD_COLOR)."""
    import cv2  # on first read: layouts, counts and the plan need no OpenCV (start-up time)

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(
            f"cannot read image {path} (missing, truncated or not an image); re-extract the dataset archive"
        )
    return image


def _png_mode(path: Path) -> str:
    """PIL mode of an image file from its header only (cheap)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode
    except FileNotFoundError:
        raise LabelError(f"label file {path} is missing; re-extract the dataset archive", "missing", path) from None
    except (UnidentifiedImageError, OSError) as err:
        message = f"cannot read label {path} ({err}); re-extract the dataset archive"
        raise LabelError(message, "unreadable", path) from None


def _read_mat_label(path: Path, rule: LabelRule, dataset: str) -> np.ndarray:
    """The `rule.mat_key` array of a .mat label file (COCO-Stuff-10k), as upstream reads it."""
    import numpy as np
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise LabelError(f"label file {path} is missing; re-extract the dataset archive", "missing", path) from None
    except Exception as err:  # scipy raises several types for corrupt files
        message = f"cannot read label {path} ({err}); re-extract the dataset archive"
        raise LabelError(message, "unreadable", path) from None
    if rule.mat_key not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise LabelError(
            f"label {path} has no '{rule.mat_key}' array (found {keys}); {dataset} needs the .mat "
            f"annotations of cocostuff-10k-v1.1.zip",
            "mat-key",
            path,
        )
    raw = np.asarray(content[rule.mat_key])
    if raw.ndim != 2:
        raise LabelError(f"label {path}: '{rule.mat_key}' has shape {raw.shape}, expected HxW", "shape", path)
    return raw


def _read_raw_label(path: Path, rule: LabelRule, dataset: str) -> np.ndarray:
    """The raw label values upstream would see (before its clsid2label mapping)."""
    if rule.reader == "mat":
        return _read_mat_label(path, rule, dataset)

    mode = _png_mode(path)
    colour_hint = (
        f"label {path} is a {mode} colour image, but {dataset} labels must be single-channel "
        f"class-index PNGs; use the annotation files of the original archive, not visualisations"
    )
    if mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB", "RGBX", "RGBa"):
        raise LabelError(colour_hint, "colour", path)

    if rule.reader == "pil" or (mode == "P" and rule.palette_as_indices):
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            raw = np.array(im)
        if raw.ndim != 2:
            raise LabelError(colour_hint, "colour", path)
        return raw

    # cv2 path: only correct for single-channel 8-bit index PNGs (upstream reads grayscale).
    if mode == "P":
        raise LabelError(
            f"label {path} is a palette PNG: upstream reads {dataset} labels with cv2 grayscale, which "
            f"returns palette luminance, not class indices; convert the labels to 8-bit grayscale "
            f"('L') PNGs holding the class indices, or use upstream's packaged archive",
            "palette",
            path,
        )
    if mode != "L":
        raise LabelError(
            f"label {path} has PIL mode {mode!r}, expected an 8-bit single-channel ('L') PNG of "
            f"class indices; re-extract the labels from the original archive",
            "mode",
            path,
        )
    import cv2  # on first read, as read_image

    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise LabelError(f"cannot read label {path}; re-extract the dataset archive", "unreadable", path)
    return raw


def map_label(raw: np.ndarray, rule: LabelRule, path: Path | str = "<array>", dataset: str = "") -> np.ndarray:
    """Apply upstream's label mapping to raw values; int64, ignore = -1.

    Raises LabelError where upstream would stop at its invalid-label assertion.
    """
    import numpy as np

    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or (raw != np.floor(raw)).any():
            message = f"label {path} holds non-integer values; labels must be class indices"
            raise LabelError(message, "values", Path(str(path)))
    elif raw.dtype.kind not in "iub":
        raise LabelError(f"label {path} has unsupported dtype {raw.dtype}", "values", Path(str(path)))
    raw = raw.astype(np.int64, copy=False)
    if raw.size == 0:
        return raw.copy()
    low, high = int(raw.min()), int(raw.max())
    if high - low > 1 << 20:  # absurd value range: don't build a huge table
        values = np.unique(raw)
        mapped_values = np.array([rule.lookup(int(v), int(v))[0] for v in values], dtype=np.int64)
        out = mapped_values[np.searchsorted(values, raw)]
    else:
        out = rule.lookup(low, high)[raw - low]
    if rule.table is not None:
        bad = out == _INVALID
        if bad.any():
            bad_values = sorted(int(v) for v in np.unique(raw[bad]))
            shown = ", ".join(str(v) for v in bad_values[:12]) + (", ..." if len(bad_values) > 12 else "")
            hint = rule.bad_value_hint(bad_values) if rule.bad_value_hint else rule.bad_value_text
            raise LabelError(
                f"label {path} has values {{{shown}}} that {dataset or 'this dataset'} does not define "
                f"(upstream would stop at its invalid-label assertion); {hint}",
                "values",
                Path(str(path)),
            )
    return out


def read_label(path: Path, rule: LabelRule, dataset: str = "") -> np.ndarray:
    """Read one label file and map it as upstream: int64 HxW, ignore = -1."""
    return map_label(_read_raw_label(Path(path), rule, dataset), rule, path, dataset)


def read_prediction(path: Path, rule: LabelRule, dataset: str = "") -> np.ndarray:
    """A saved prediction (`repro eval --save-predictions`: a PNG in the numbering of the
    dataset's own label files) as classes, mapped like a label: int64 HxW. A plain PNG whatever
    the dataset's label files are (COCO-Stuff's are .mat)."""
    import cv2  # on first read, as read_image

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise LabelError(f"cannot read the prediction {path} as a one-channel PNG", "unreadable", Path(path))
    return map_label(raw, rule, path, dataset)


# ---------------------------------------------------------------------------------------------
# Layout helpers


def read_id_list(path: Path) -> list[str]:
    """Ids of an upstream id-list file: one per line, surrounding blanks stripped, empty lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"cannot read id list {path} ({err.strerror}); re-extract the dataset archive") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {path} ({what}); {fix}")
    return path


def list_files(folder: Path, suffix: str) -> list[str]:
    """Sorted names of the regular files in `folder` ending with `suffix` (hidden files skipped)."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.endswith(suffix) and not e.name.startswith(".") and e.is_file()]
    except OSError as err:
        raise DatasetError(f"cannot list {folder} ({err.strerror}); check the dataset folder") from None
    return sorted(names)


_said: set[str] = set()


def note_once(message: str) -> None:
    """Log a warning once per process (e.g. an id list that is missing and was replaced by a listing)."""
    if message not in _said:
        _said.add(message)
        logger.warning(message)


class _DirListing:
    """Existence checks through cached directory listings (one listdir per folder, fast on NFS)."""

    def __init__(self) -> None:
        self._cache: dict[Path, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        parent = path.parent
        names = self._cache.get(parent)
        if names is None:
            try:
                names = frozenset(os.listdir(parent))
            except OSError:
                names = frozenset()
            self._cache[parent] = names
        return path.name in names


@dataclass
class Located:
    """What a layout found for one split: the entries, the folder used and notes to show once."""

    entries: list[Entry]
    base: Path
    notes: list[str] = field(default_factory=list)
    videos: dict[str, int] | None = None  # VSPW: video -> number of frames
    # Optional per-dataset explanation for a missing label file (e.g. trainIds found instead).
    missing_label_hint: Callable[[Path], str | None] | None = None

    def __len__(self) -> int:
        return len(self.entries)


class DatasetLayout:
    """Where one dataset's files are. Subclasses implement `locate` and `label_name`; `locate`
    builds each label path with `label_name`, so saved predictions follow the same rule."""

    def locate(self, root: Path, split: str) -> Located:  # pragma: no cover - interface
        raise NotImplementedError

    def label_name(self, sample_id: str) -> str:  # pragma: no cover - interface
        """The label file of `sample_id`, relative to the split's label folder (posix)."""
        raise NotImplementedError


def missing_file_problems(located: Located, has_labels: bool, dataset: str) -> list[str]:
    """One line per kind of missing file (images, labels), with a count and the first example."""
    listing = _DirListing()
    missing_images = [e.image_path for e in located.entries if not listing.exists(e.image_path)]
    problems = []
    total = len(located.entries)
    if missing_images:
        problems.append(
            f"{len(missing_images)} of {total} {dataset} images are missing (first: {missing_images[0]}); "
            f"the id list names files that are not there: re-extract the dataset archive"
        )
    if has_labels:
        missing_labels = [
            e.label_path for e in located.entries if e.label_path is None or not listing.exists(e.label_path)
        ]
        if missing_labels:
            first = missing_labels[0]
            hint = located.missing_label_hint(first) if located.missing_label_hint and first else None
            problems.append(
                f"{len(missing_labels)} of {total} {dataset} images have no label file (first: {first}); "
                + (hint or "re-extract the annotations of the dataset archive")
            )
    return problems


class EvalDataset:
    """One split of one dataset, in a stable order, read exactly as upstream's test loop reads it."""

    def __init__(self, spec: DatasetSpec, root: Path, split: str, located: Located):
        self.spec = spec
        self.rule = spec.rule
        self.root = root
        self.split = split
        self.base = located.base
        self.notes = list(located.notes)
        self.videos = dict(located.videos) if located.videos is not None else None
        self._entries = located.entries
        self._ids = [e.id for e in located.entries]
        self._index = {sample_id: i for i, sample_id in enumerate(self._ids)}
        self.has_labels = spec.has_labels(split)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"EvalDataset({self.spec.name!r}, split={self.split!r}, n={len(self)}, root={str(self.root)!r})"

    def index_of(self, sample_id: str) -> int:
        return self._index[sample_id]

    def image_path(self, i: int) -> Path:
        return self._entries[i].image_path

    def label_path(self, i: int) -> Path | None:
        return self._entries[i].label_path if self.has_labels else None

    def read_image(self, i: int) -> np.ndarray:
        return read_image(self._entries[i].image_path)

    def read_label(self, i: int) -> np.ndarray | None:
        """Mapped label (int64, ignore -1), or None for a server-scored split."""
        path = self.label_path(i)
        if path is None:
            return None
        return read_label(path, self.rule, self.spec.title)

    def __getitem__(self, i: int) -> Sample:
        entry = self._entries[i]
        image = read_image(entry.image_path)
        label = self.read_label(i)
        if label is not None and label.shape != image.shape[:2]:
            raise DatasetError(
                f"label {entry.label_path} is {label.shape[0]}x{label.shape[1]} but image {entry.image_path} "
                f"is {image.shape[0]}x{image.shape[1]}; labels must have the size of their image"
            )
        return Sample(entry.id, image, label, entry.image_path, entry.label_path if self.has_labels else None)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
