"""Shared helpers of the fetch tests: isolated cache/data folders, a test manifest, tiny checkpoints."""

from __future__ import annotations

import copy
import functools
import io
from pathlib import Path

import pytest
import torch
import yaml

import repro.fetch.download as download
from repro.manifest import DEFAULT_PATH

GITHUB_CKPT = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mcibi/"


@pytest.fixture
def fetch_env(tmp_path, monkeypatch):
    """REPRO_HOME / REPRO_DATA in tmp, no mirror, no backoff sleeps. Returns tmp_path."""
    monkeypatch.setenv("REPRO_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("REPRO_MIRROR", raising=False)
    monkeypatch.delenv("REPRO_MANIFEST", raising=False)
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(download, "RESUME_BACKOFF_S", 0.0)
    monkeypatch.setattr(download, "HTTP_RETRIES", 2)
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", 5.0)
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 10.0)
    return tmp_path


@functools.lru_cache(maxsize=1)
def _real_rows() -> tuple[dict, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(yaml.load(Path(DEFAULT_PATH).read_text(encoding="utf-8"), Loader=loader)["models"])


def real_rows() -> list[dict]:
    return copy.deepcopy(list(_real_rows()))


def pick_row(method: str, dataset: str, contains: str = "") -> dict:
    """A row of the real manifest (its schema stays whatever the manifest module validates)."""
    for row in real_rows():
        if row["method"] == method and row["dataset"] == dataset and contains in row["id"]:
            return row
    raise LookupError(f"no {method} row on {dataset} with '{contains}' in its id")


def write_manifest(tmp_path: Path, monkeypatch, rows: list[dict], name: str = "zoo.yaml") -> Path:
    """Write a manifest holding `rows` (copies of real rows, edited) and make it the active one."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"schema_version": 1, "models": rows}, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("REPRO_MANIFEST", str(path))
    return path


def checkpoint_bytes(num_classes: int, *, plusplus: bool = False, padding: int = 0, wrap: bool = True) -> bytes:
    """A torch.save'd dict with upstream's key names for the class-count check (tiny tensors).

    MCIBI: memory (C, 1, 8), decoder_stage2.{0,1,4}; MCIBI++: memory (C, 2), decoder_cls.conv{1,2}.
    `padding` float32 values make the file bigger for mid-transfer faults.
    """
    gen = torch.Generator().manual_seed(num_classes * 7 + padding)
    state = {"backbone_net.stem.0.weight": torch.randn(4, 3, 3, 3, generator=gen)}
    if plusplus:
        state["memory_module.memory"] = torch.randn(num_classes, 2, generator=gen)
        state["decoder_cls.conv1.weight"] = torch.randn(8, 16, 3, 3, generator=gen)
        state["decoder_cls.bn1.weight"] = torch.randn(8, generator=gen)
        state["decoder_cls.conv2.weight"] = torch.randn(num_classes, 8, 1, 1, generator=gen)
        state["decoder_cls.conv2.bias"] = torch.randn(num_classes, generator=gen)
    else:
        state["memory_module.memory"] = torch.randn(num_classes, 1, 8, generator=gen)
        state["decoder_stage2.0.weight"] = torch.randn(8, 8, 1, 1, generator=gen)
        state["decoder_stage2.1.weight"] = torch.randn(8, generator=gen)
        state["decoder_stage2.4.weight"] = torch.randn(num_classes, 8, 1, 1, generator=gen)
        state["decoder_stage2.4.bias"] = torch.randn(num_classes, generator=gen)
    if padding:
        state["backbone_net.padding"] = torch.randn(padding, generator=gen)
    buffer = io.BytesIO()
    torch.save({"model": state, "cur_epoch": 110} if wrap else state, buffer)
    return buffer.getvalue()


@functools.lru_cache(maxsize=8)
def _model_shapes(model_id: str) -> tuple[tuple[str, tuple[int, ...], torch.dtype], ...]:
    from repro.models import build_segmentor

    with torch.device("meta"):  # shapes only
        model = build_segmentor(model_id)
    return tuple((k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items())


def fitting_checkpoint_bytes(model_id: str, *, value: float = 0.0, wrap: bool = True) -> bytes:
    """A torch.save'd checkpoint with every key and shape of `model_id`'s network, a few hundred
    kB: each tensor is one number broadcast to its shape (stride 0), which torch.save stores once.
    It passes the strict key check of `fetch --from`; `value` makes files of other content."""
    state = {k: torch.full((), value, dtype=dtype).expand(shape) for k, shape, dtype in _model_shapes(model_id)}
    buffer = io.BytesIO()
    torch.save({"model": state, "cur_epoch": 110} if wrap else state, buffer)
    return buffer.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Partial or temporary files under `folder` (what must never survive a failure)."""
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.endswith((".part", ".tmp", ".extracting")) or ".extracting" in p.parent.name
    )
