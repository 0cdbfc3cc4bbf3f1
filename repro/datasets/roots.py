"""Where each dataset's folder is, the same for every command, and opening a split of it.

Order: `--dataset-root NAME=PATH` (the `overrides` every caller passes: the CLI parses them,
`EngineOptions.dataset_roots` carries them to the plan, the engine and launched jobs) >
$REPRO_DATA_<NAME> > `--data-root` > $REPRO_DATA > <cache_home>/data. A data root may hold the
dataset folders (any folder name) or be one dataset's own folder; both are recognised by the
layout (`DatasetSpec.markers`). Light: only stat calls, no image library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from repro.datasets.base import DatasetSpec, EvalDataset, missing_file_problems, note_once
from repro.datasets.registry import find_dataset, get_spec
from repro.errors import DatasetError, ReproError
from repro.paths import data_root as _data_root


def dataset_env_var(name: str) -> str:
    """The per-dataset environment variable, e.g. REPRO_DATA_LIP."""
    return "REPRO_DATA_" + name.upper()


def missing_dataset_message(name: str, root: Path) -> str:
    """The one line for a dataset folder that is not there: how to fetch it, or say where it is."""
    return (
        f"dataset folder {root} does not exist; fetch it with `repro fetch --dataset {name}` "
        f"or pass --data-root / --dataset-root {name}=PATH"
    )


def looks_like_dataset(name: str, folder: Path) -> bool:
    """True when `folder` holds one of the marker sets of dataset `name` (a few stat calls)."""
    return any(all((folder / m).exists() for m in group) for group in get_spec(name).markers)


def dataset_name(name: str, what: str = "dataset") -> str:
    """A dataset name given by a user (any case, or an alias), as repro writes it; one line
    with suggestions (exit code 2) otherwise."""
    return find_dataset(name, what).name


def parse_dataset_roots(values: list[str] | None) -> dict[str, Path]:
    """`--dataset-root NAME=PATH` values (repeatable) as {name: path}; one-line errors."""
    roots: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = str(value).partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ReproError(f"--dataset-root takes NAME=PATH (e.g. lip=/data/my_lip), got {value!r}", exit_code=2)
        roots[dataset_name(name, "dataset in --dataset-root")] = Path(path.strip()).expanduser()
    return roots


def _explicit_root(name: str, overrides: Mapping[str, str | os.PathLike] | None) -> Path | None:
    """--dataset-root NAME=PATH, else $REPRO_DATA_<NAME>, else None."""
    given = (overrides or {}).get(name)
    if given is not None:
        return Path(given).expanduser()
    env = os.environ.get(dataset_env_var(name))
    return Path(env).expanduser() if env else None


def dataset_place(
    name: str, data_root: str | os.PathLike | None = None, overrides: Mapping[str, str | os.PathLike] | None = None
) -> Path:
    """Where dataset `name` goes when fetched: its explicit root, else <data root>/<folder>."""
    spec = find_dataset(name)
    explicit = _explicit_root(spec.name, overrides)
    return explicit if explicit is not None else _data_root(data_root) / spec.folder


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


def _find_dataset(spec: DatasetSpec, folder: Path, default: Path) -> Path:
    """The dataset folder in or at `folder` (`default` first); `default` when none is found."""
    for candidate in (default, folder, folder / spec.folder, folder / Path(spec.folder).name):
        if looks_like_dataset(spec.name, candidate):
            return candidate
    if default.exists():
        return default  # there but broken: the checks will name its problems
    return _child_with_markers(spec.name, folder) or default


def resolve_dataset_root(
    name: str, data_root: str | os.PathLike | None = None, overrides: Mapping[str, str | os.PathLike] | None = None
) -> Path:
    """The folder of dataset `name`, the same for every command (see the module's order;
    `overrides`: the --dataset-root values). When nothing is found: `dataset_place`."""
    spec = find_dataset(name)
    explicit = _explicit_root(spec.name, overrides)
    if explicit is not None:
        return _find_dataset(spec, explicit, explicit)
    base = _data_root(data_root)
    return _find_dataset(spec, base, base / spec.folder)


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
        raise DatasetError(missing_dataset_message(spec.name, root_path))
    return spec, root_path, split


def open_dataset(name: str, root: str | os.PathLike | None = None, split: str | None = None) -> EvalDataset:
    """One split of a dataset, checked for a complete layout (every image and label present).

    `root` is the dataset folder (default: `resolve_dataset_root(name)`); `split` defaults to the
    dataset's evaluation split. Raises DatasetError with one actionable line on a bad layout.
    """
    spec, root_path, split = resolve(name, root, split)
    located = spec.layout.locate(root_path, split)
    if not located.entries:
        raise DatasetError(
            f"{spec.title} {split} split under {root_path} lists no images; re-extract the dataset archive"
        )
    problems = missing_file_problems(located, spec.has_labels(split), spec.title)
    if problems:
        raise DatasetError(problems[0])
    for note in located.notes:  # e.g. a missing id list replaced by a folder listing
        note_once(note)
    return EvalDataset(spec, root_path, split, located)
