"""Where repro keeps checkpoints (cache), datasets (data root) and results.

platformdirs gives the per-OS cache folder; environment variables override it so that a
cluster can point every user at one shared copy. Light on purpose: the CLI imports it at start.
Where one dataset's folder is under the data root (which needs the dataset's facts) is
`repro.datasets.roots`.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


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
