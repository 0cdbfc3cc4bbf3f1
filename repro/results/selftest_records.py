"""`repro selftest` records, read here (below the engine, which cites the latest one in every
result's `selftest` field) and written by `repro.selftest.record`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from repro.paths import cache_home


def selftest_record_path(device_label: str) -> Path:
    """<cache_home>/selftest/<device>.json, e.g. .../selftest/cuda-0.json for 'cuda:0 (NVIDIA H200)'."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_label.split(" (")[0]).strip("-") or "device"
    return cache_home() / "selftest" / f"{slug}.json"


def latest_selftest(device: object) -> dict | None:
    """The last recorded `repro selftest` on `device` ('cpu', 'cuda:0', a result's device label),
    as {path, date, passed, device, torch, driver, cudnn, quick}; None if there is none."""
    label = str(device)
    if label.strip().lower() == "cuda":
        label = "cuda:0"
    path = selftest_record_path(label)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    env = data.get("environment", {})
    return {"path": str(path), "date": data.get("date"), "passed": data.get("passed"), "device": data.get("device"),
            "torch": env.get("torch"), "driver": env.get("driver"), "cudnn": env.get("cudnn"), "quick": data.get("quick")}
