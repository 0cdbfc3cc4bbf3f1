"""The shape of the package (docs/DESIGN.md): the folder list shows the data path, imports point
one way (down the layers below), there is no import circle, and the top level stays small.

Every import counts, the ones inside functions (loaded on first use) and under TYPE_CHECKING too:
an arrow back up is one whether it runs at import time or later.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import repro

PACKAGE = Path(repro.__file__).parent

# Lowest first: a module may import from its own layer and the layers before it, never after.
LAYERS = [
    ("repro", "repro.errors", "repro.fileio", "repro.numerics", "repro.perf", "repro.paths", "repro.text", "repro.lazy"),
    ("repro.datasets",),
    ("repro.manifest",),
    ("repro.fetch",),
    ("repro.models",),
    ("repro.inference",),
    ("repro.metrics",),
    ("repro.results",),
    ("repro.engine",),
    ("repro.planning",),
    ("repro.status",),
    ("repro.report",),
    ("repro.explain",),
    ("repro.selftest",),
    ("repro.cli", "repro.__main__"),
]
MAX_TOP_LEVEL_MODULES = 16


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported(node: ast.AST, name: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the repro modules it imports (`from pkg import name` counts as importing the
    module `pkg.name` when there is one, else `pkg`)."""
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _imported(node, name, path.name == "__init__.py"):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def layer_of(name: str) -> int:
    matches = [(len(prefix), index) for index, group in enumerate(LAYERS) for prefix in group
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} belongs to no layer of tests/test_layout.py (and docs/DESIGN.md)"
    return max(matches)[1]


def test_imports_point_down_the_layers():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if b != "repro" and layer_of(b) > layer_of(a)]
    assert upward == []


def test_there_is_no_import_circle():
    graph, state, circles = import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt == "repro":  # the package itself holds only __version__
                continue
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for name in sorted(modules()):
        if name not in state:
            visit(name, [])
    assert circles == []


def test_the_top_level_stays_small():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_the_checker_sees_an_arrow_back_up(tmp_path):
    """The graph is read from real import statements: a function-level import counts."""
    tree = ast.parse("def f():\n    from repro.report.table import build_report\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _imported(node, "repro.results.files", False) == ["repro.report.table.build_report"]
    assert layer_of("repro.report.table") > layer_of("repro.results.files")


# A dataset's facts live in its module (repro/datasets/<name>.py); every other module reads the
# registry. A name may also appear in one more file (e.g. where it is chosen on purpose).
MAX_FILES_PER_DATASET_NAME = 2


def string_constants(path: Path) -> set[str]:
    """The exact values of the string literals in a module (docstrings included)."""
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_a_dataset_name_is_written_in_at_most_two_files():
    from repro.datasets.registry import DATASETS

    constants = {name: string_constants(path) for name, path in modules().items()}
    for dataset in DATASETS:
        files = sorted(name for name, values in constants.items() if dataset in values)
        assert len(files) <= MAX_FILES_PER_DATASET_NAME, f"{dataset!r} is written in {files}"


def test_the_name_check_sees_a_literal_but_not_a_longer_string(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""About vspw."""\nx = {"vspw": 1}\ny = "mcibi_deeplabv3_r50_vspw"\n')
    assert "vspw" in string_constants(module) and "About vspw." in string_constants(module)
    module.write_text('y = "mcibi_deeplabv3_r50_vspw"\n')
    assert "vspw" not in string_constants(module)
