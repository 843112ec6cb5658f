"""The library's import contract (docs/architecture.md): four layers, imports only run downwards, no cycles.

Every ``import`` counts, the ones inside functions too, and importing ``bnlab.a.b`` from outside ``bnlab.a``
also runs ``bnlab/a/__init__.py``. A module no layer names fails the test, so a new one is placed on purpose.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer and the ones below it
LAYERS = {
    "definitions": (
        "bnlab",
        "bnlab._quiet",
        "bnlab.settings",
        "bnlab.exercise",
        "bnlab.variants",
        "bnlab.reference",
        "bnlab.data",
        "bnlab.device",
    ),
    "training": ("bnlab.nn", "bnlab.training", "bnlab.monitor"),
    "teaching and judging": (
        "bnlab.lesson",
        "bnlab.diagnostics",
        "bnlab.normalization",
        "bnlab.layer_viewer",
        "bnlab.questions",
        "bnlab.tables",
        "bnlab.gradients",
        "bnlab.grading",
    ),
    "instructor tooling": ("bnlab.instructor",),
}
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes}


def module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """The rank of ``module``'s layer: the longest prefix that names it (``bnlab`` itself only names itself)."""
    best = None
    for prefix, rank in RANK.items():
        if (module == prefix or (prefix != "bnlab" and module.startswith(prefix + "."))) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, rank)
    return None if best is None else best[1]


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    """``{module: {imported bnlab module: line}}`` for every module of the package in ``package_dir``."""
    modules = {module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target.split(".")[0] != "bnlab":
                    continue
                # the packages on the way are initialised too, unless the importer is inside them already
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    step = ".".join(parts[:i])
                    if step != name and not name.startswith(step + ".") and step in modules:
                        edges.setdefault(step, node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(package_dir: Path) -> list[str]:
    """Every breach of the contract in the package at ``package_dir``, one line each."""
    graph = import_graph(package_dir)
    names = list(LAYERS)
    problems = [
        f"{m} is in no layer: add it to LAYERS in tests/test_architecture.py and docs/architecture.md"
        for m in sorted(graph)
        if layer(m) is None
    ]
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            low, high = layer(module), layer(target)
            if low is not None and high is not None and high > low:
                problems.append(
                    f"{module} (line {line}, {names[low]}) imports {target} ({names[high]}): imports run downwards only"
                )
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def test_the_library_keeps_its_import_contract():
    assert violations(ROOT / "bnlab") == []


def test_every_layer_names_a_module_that_exists():
    graph = import_graph(ROOT / "bnlab")
    for prefix in RANK:
        assert any(m == prefix or m.startswith(prefix + ".") for m in graph), f"{prefix} is no module any more"


@pytest.fixture
def scratch_library(tmp_path):
    copy = tmp_path / "bnlab"
    shutil.copytree(ROOT / "bnlab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_a_back_import_inside_a_function_breaks_the_contract(scratch_library):
    path = scratch_library / "training" / "loop.py"
    path.write_text(path.read_text() + "\n\ndef _sneaky():\n    from bnlab.instructor import release\n")
    problems = violations(scratch_library)
    assert any(
        p.startswith("bnlab.training.loop (line") and "imports bnlab.instructor.release" in p for p in problems
    ), problems


def test_an_import_cycle_breaks_the_contract(scratch_library):
    path = scratch_library / "exercise.py"
    path.write_text(path.read_text() + "\n\ndef _back():\n    from bnlab import settings\n")
    settings = scratch_library / "settings.py"
    settings.write_text(settings.read_text() + "\n\ndef _forth():\n    from bnlab import exercise\n")
    assert "import cycle: bnlab.exercise -> bnlab.settings" in violations(scratch_library)


def test_a_new_module_must_be_placed_in_a_layer(scratch_library):
    (scratch_library / "helpers.py").write_text("X = 1\n")
    assert any(p.startswith("bnlab.helpers is in no layer") for p in violations(scratch_library))


def test_instructor_tooling_loads_no_tensorflow():
    """A grading coordinator stays light: importing every instructor module loads neither TensorFlow nor Keras."""
    modules = sorted(
        m for m in import_graph(ROOT / "bnlab") if layer(m) == len(LAYERS) - 1 and not m.endswith("__main__")
    )
    assert len(modules) > 15
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(n for n in ('tensorflow', 'keras') if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", "an instructor module loads TensorFlow on import"
