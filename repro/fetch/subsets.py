"""Partial datasets accepted with `--allow-subset`: named as such ("accepted as a subset: 3 of
10000 images", never "complete"), and remembered so that `repro data check` can say that the
folder it finds incomplete was accepted that way."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from repro.paths import cache_home

SUBSETS_FILE = "accepted_subsets.json"  # in the cache folder: {dataset: {folder, counts, date}}


def subset_counts(result) -> str | None:
    """'3 of 10000 images' (one part per short split) for a `check_dataset` result whose folder
    holds fewer (or more) than the official split; None when every split is complete."""
    splits = getattr(result, "splits", ())  # a plain list of problems has no counts: complete
    parts = [f"{s.count} of {s.expected} {s.unit}" + ("" if len(splits) == 1 else f" ({s.split})")
             for s in splits if s.count is not None and s.count != s.expected]
    return ", ".join(parts) or None


def state_text(result) -> str:
    """How a folder that passed the checks is described."""
    counts = subset_counts(result)
    return f"accepted as a subset: {counts}" if counts else "present and complete"


def _file() -> Path:
    return cache_home() / SUBSETS_FILE


def _read() -> dict:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(name: str, folder: Path, result) -> None:
    """Record (or, for a complete folder, forget) the acceptance of `folder` as dataset `name`."""
    data = _read()
    counts = subset_counts(result)
    if counts is None and name not in data:
        return
    if counts is None:
        data.pop(name)
    else:
        data[name] = {"folder": str(Path(folder).resolve()), "counts": counts, "date": time.strftime("%Y-%m-%d")}
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, path)


def accepted(name: str, folder: Path) -> str | None:
    """'accepted as a subset (3 of 10000 images) by `repro fetch --allow-subset` on DATE' when
    `folder` is the one recorded for `name`; None otherwise."""
    record = _read().get(name)
    if not isinstance(record, dict) or record.get("folder") != str(Path(folder).resolve()):
        return None
    return f"accepted as a subset ({record.get('counts')}) by `repro fetch --allow-subset` on {record.get('date')}"
