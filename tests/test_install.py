"""The install cannot silently depend on the machine: every third-party package that repro/
imports is declared in pyproject.toml, and the suite runs on versions inside the declared ranges."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "repro"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements() -> list[Requirement]:
    """Requirements of [project] dependencies and of every optional extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def imported_top_level_names(path: Path) -> dict[str, int]:
    """{top-level module name: first line} of every absolute import in a file, nested ones included."""
    names: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.setdefault(alias.name.split(".")[0], node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.setdefault(node.module.split(".")[0], node.lineno)
    return names


@functools.lru_cache(maxsize=1)
def third_party_imports() -> dict[str, list[str]]:
    """{module name: ['repro/x.py:12', ...]} for every import that is neither stdlib nor repro."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, line in imported_top_level_names(path).items():
            if name in sys.stdlib_module_names or name in ("repro", "__future__"):
                continue
            found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_the_scan_sees_known_imports():
    # guards the scanner itself: these are imported at module level and inside functions
    found = third_party_imports()
    for name in ("torch", "typer", "yaml", "cv2", "urllib3", "pydantic"):
        assert name in found, name
    assert "os" not in found and "repro" not in found


def test_every_third_party_import_is_declared():
    declared = {canonical(r.name) for r in declared_requirements()}
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for name, where in sorted(third_party_imports().items()):
        # not installed here (an optional extra's import): the distribution is named like the module
        providers = {canonical(d) for d in distributions.get(name, [name])}
        if not providers & declared:
            problems.append(f"{name} ({where[0]}): from {', '.join(sorted(providers))}, which pyproject.toml does not declare")
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_installed_versions_are_inside_the_declared_ranges():
    """The ranges in pyproject.toml are the ones this suite actually runs with."""
    outside = []
    for requirement in declared_requirements():
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional extra that is not installed here
        if not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{requirement.name} {version} is outside '{requirement.specifier}'")
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("name", ["click"])
def test_no_import_of_what_typer_stopped_installing(name):
    assert name not in third_party_imports()
