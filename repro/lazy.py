"""Packages that name their public API lazily (PEP 562): `from repro.engine import evaluate`
loads `repro.engine.run` on first use, so that importing a light module of the package (the
engine's options, inference's geometry, the checkpoint cache) loads no torch or HTTP client."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """The package's `__getattr__` and `__all__` for `homes` (module -> the names it defines)."""
    if any(isinstance(names, str) for names in homes.values()):
        raise TypeError(f"{package}: each module's names must be a tuple, not a string")
    module_of = {name: module for module, names in homes.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # found once: later lookups do not come back here
        return value

    return __getattr__, sorted(module_of)
