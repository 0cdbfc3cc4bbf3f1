"""Where repro keeps checkpoints (cache), datasets (data root) and results.

platformdirs gives the per-OS cache folder; environment variables override it so that a
cluster can point every user at one shared copy. Light on purpose: the CLI imports it at start.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import platformdirs

from repro.errors import ReproError

# Folder each dataset unpacks to under the data root (upstream's archive layout and rootdir).
DATASET_FOLDERS = {
    "ade20k": "ADE20k",
    "cityscapes": "CityScapes",
    "cocostuff10k": "COCOStuff10k",
    "lip": "LIP",
    "voc": "VOCdevkit/VOC2012",
    "pascalcontext59": "VOCdevkit/VOC2010",
    "vspw": "VSPW_480p",
}


def cache_home() -> Path:
    """Checkpoint cache: $REPRO_HOME, else the platform cache folder (~/.cache/repro on Linux)."""
    env = os.environ.get("REPRO_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("repro"))


def data_root(override: str | os.PathLike | None = None) -> Path:
    """Dataset root: explicit override, else $REPRO_DATA, else <cache_home>/data."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("REPRO_DATA")
    return Path(env).expanduser() if env else cache_home() / "data"


_data_root = data_root  # for the functions whose `data_root` parameter hides it


# A dataset folder holds every path of at least one of these sets (one set per layout the
# dataset readers accept). Used to recognise a dataset folder whatever its name, and to find it
# in what an archive unpacks to.
DATASET_MARKERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ade20k": (
        ("ADEChallengeData2016/images", "ADEChallengeData2016/annotations"),
        ("images/validation", "annotations/validation"),  # the official zip's folder itself
    ),
    "cityscapes": (("leftImg8bit", "gtFine"),),
    "cocostuff10k": (
        ("images", "annotations", "imageLists"),
        ("cocostuff-10k-v1.1/images", "cocostuff-10k-v1.1/annotations", "cocostuff-10k-v1.1/imageLists"),
    ),
    "lip": (("val_images", "val_segmentations"), ("TrainVal_images", "TrainVal_parsing_annotations")),
    "voc": (
        ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"),
        ("VOC2012/JPEGImages", "VOC2012/SegmentationClass", "VOC2012/ImageSets/Segmentation"),
    ),
    "pascalcontext59": (
        ("JPEGImages", "SegmentationClassContext"),
        ("VOC2010/JPEGImages", "VOC2010/SegmentationClassContext"),
    ),
    "vspw": (("data", "val.txt"),),
}

# --dataset-root NAME=PATH of the running command (see `dataset_root_overrides`).
_OVERRIDES: ContextVar[Mapping[str, Path]] = ContextVar("repro_dataset_roots", default={})


def dataset_env_var(name: str) -> str:
    """The per-dataset environment variable, e.g. REPRO_DATA_LIP."""
    return "REPRO_DATA_" + name.upper()


def looks_like_dataset(name: str, folder: Path) -> bool:
    """True when `folder` holds one of the marker sets of dataset `name` (a few stat calls)."""
    return any(all((folder / m).exists() for m in group) for group in DATASET_MARKERS[name])


def dataset_name(name: str, what: str = "dataset") -> str:
    """A dataset name, case-insensitive; ReproError (exit code 2) with suggestions otherwise."""
    key = str(name).strip().lower()
    if key in DATASET_FOLDERS:
        return key
    close = difflib.get_close_matches(key, list(DATASET_FOLDERS), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ReproError(f"unknown {what} {name!r}; {hint}choose from {', '.join(DATASET_FOLDERS)}", exit_code=2)


def parse_dataset_roots(values: list[str] | None) -> dict[str, Path]:
    """`--dataset-root NAME=PATH` values (repeatable) as {name: path}; one-line errors."""
    roots: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = str(value).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ReproError(f"--dataset-root takes NAME=PATH (e.g. lip=/data/my_lip), got {value!r}", exit_code=2)
        roots[dataset_name(name, "dataset in --dataset-root")] = Path(path.strip()).expanduser()
    return roots


@contextmanager
def dataset_root_overrides(roots: Mapping[str, Path] | None) -> Iterator[None]:
    """Make `roots` ({name: path}) the --dataset-root overrides of every resolution in the block."""
    token = _OVERRIDES.set(dict(roots or {}))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def _explicit_root(name: str, overrides: Mapping[str, Path] | None) -> Path | None:
    """--dataset-root NAME=PATH, else $REPRO_DATA_<NAME>, else None."""
    given = (overrides if overrides is not None else _OVERRIDES.get()).get(name)
    if given is not None:
        return Path(given).expanduser()
    env = os.environ.get(dataset_env_var(name))
    return Path(env).expanduser() if env else None


def dataset_place(
    name: str, data_root: str | os.PathLike | None = None, overrides: Mapping[str, Path] | None = None
) -> Path:
    """Where dataset `name` goes when fetched: its explicit root, else <data root>/<folder>."""
    name = dataset_name(name)
    explicit = _explicit_root(name, overrides)
    return explicit if explicit is not None else _data_root(data_root) / DATASET_FOLDERS[name]


def _child_with_markers(name: str, parent: Path) -> Path | None:
    """The one sub-folder of `parent` that looks like dataset `name`, whatever its name."""
    try:
        children = sorted(p for p in parent.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError:
        return None
    found = [child for child in children[:256] if looks_like_dataset(name, child)]
    if len(found) > 1:
        listed = ", ".join(str(p) for p in found)
        raise ReproError(f"several {name} folders under {parent} ({listed}); choose one with --dataset-root {name}=PATH")
    return found[0] if found else None


def _find_dataset(name: str, folder: Path, default: Path) -> Path:
    """The dataset folder in or at `folder` (`default` first); `default` when none is found."""
    folder_name = DATASET_FOLDERS[name]
    for candidate in (default, folder, folder / folder_name, folder / Path(folder_name).name):
        if looks_like_dataset(name, candidate):
            return candidate
    if default.exists():
        return default  # there but broken: the checks will name its problems
    return _child_with_markers(name, folder) or default


def resolve_dataset_root(
    name: str, data_root: str | os.PathLike | None = None, overrides: Mapping[str, Path] | None = None
) -> Path:
    """The folder of dataset `name`, the same for every command.

    Order: `overrides` (--dataset-root NAME=PATH; default: those set by `dataset_root_overrides`)
    > $REPRO_DATA_<NAME> > `data_root` (--data-root) > $REPRO_DATA > <cache_home>/data. A data
    root may hold the dataset folders (any folder name) or be the dataset's own folder; both are
    recognised by the layout (DATASET_MARKERS). When nothing is found: `dataset_place`.
    """
    name = dataset_name(name)
    explicit = _explicit_root(name, overrides)
    if explicit is not None:
        return _find_dataset(name, explicit, explicit)
    base = _data_root(data_root)
    return _find_dataset(name, base, base / DATASET_FOLDERS[name])


def dataset_root(dataset: str, data_root_override: str | os.PathLike | None = None) -> Path:
    """The folder of one dataset (see `resolve_dataset_root`), e.g. <data>/ADE20k."""
    return resolve_dataset_root(dataset, data_root_override)


def checkpoint_dir(model_id: str) -> Path:
    return cache_home() / "checkpoints" / model_id


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """Result files: explicit override, else $REPRO_RESULTS, else <cache_home>/results, as an
    absolute path (every command prints the same path for the same folder).

    One default for `repro eval`, `report` and `status`, so that they agree from any folder.
    """
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("REPRO_RESULTS")
    return (Path(env).expanduser() if env else cache_home() / "results").resolve()
