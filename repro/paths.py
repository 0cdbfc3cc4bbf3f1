"""Where repro keeps checkpoints (cache) and datasets (data root).

platformdirs gives the per-OS cache folder; environment variables override it so that a
cluster can point every user at one shared copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

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


def dataset_root(dataset: str, data_root_override: str | os.PathLike | None = None) -> Path:
    """The folder of one dataset under the data root, e.g. <data>/ADE20k."""
    return data_root(data_root_override) / DATASET_FOLDERS[dataset]


def checkpoint_dir(model_id: str) -> Path:
    return cache_home() / "checkpoints" / model_id
