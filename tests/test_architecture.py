"""The package's layout: imports point one way (runner -> ablations -> study -> claims -> engine ->
config -> models/losses/viz -> metrics -> data -> utils), with no cycles, the library never
imports its runner. Every ``import`` statement is read from the source (function-level imports
included), so a lazy import cannot hide a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "reidlib"

#: lower layers never import higher ones; one layer per folder (a module inherits its package's layer)
LAYERS = [
    ("reidlib", "reidlib.errors", "reidlib.utils"),
    ("reidlib.data",),
    ("reidlib.metrics",),
    ("reidlib.models", "reidlib.losses", "reidlib.viz"),
    ("reidlib.config",),
    ("reidlib.engine",),
    ("reidlib.claims",),
    ("reidlib.study",),
    ("reidlib.ablations",),
    ("reidlib.runner", "reidlib.experiments", "reidlib.__main__"),
]
#: the runner and the tools built on it: nothing else may import them
RUNNER = ("reidlib.runner", "reidlib.experiments", "reidlib.__main__")


def _is_runner(mod: str) -> bool:
    return any(mod == r or mod.startswith(r + ".") for r in RUNNER)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(name: str, modules: dict) -> str | None:
    """The module ``name`` refers to (an attribute import ``from a.b import c`` -> ``a.b`` unless
    ``a.b.c`` is a module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, modules: dict) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        for n in names:
            if n.startswith("reidlib"):
                target = _resolve(n, modules)
                if target and target != mod:
                    out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _layer(mod: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (mod == n or mod.startswith(n + ".")) and len(n) > depth:
                best, depth = i, len(n)
    assert best is not None, f"{mod} is in no layer"
    return best


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_its_runner():
    offenders = sorted(f"{m} imports {n}" for m, deps in _graph().items() if not _is_runner(m)
                       for n in deps if _is_runner(n))
    assert not offenders, offenders


def test_imports_point_down_the_layers():
    upward = sorted(f"{m} (layer {_layer(m)}) imports {n} (layer {_layer(n)})"
                    for m, deps in _graph().items() for n in deps if _layer(n) > _layer(m))
    assert not upward, "\n".join(upward)


def test_no_private_names_imported_across_modules():
    """Helpers shared between modules are public in the module that owns them."""
    modules = _modules()
    bad = []
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reidlib") and not node.level:
                for a in node.names:
                    target = f"{node.module}.{a.name}"
                    if a.name.startswith("_") and target not in modules and not a.name.startswith("__"):
                        bad.append(f"{mod}: from {node.module} import {a.name}")
    assert not bad, bad


@pytest.mark.parametrize("module", ["reidlib.ablations.span", "reidlib.engine.training", "reidlib.study.study"])
def test_checker_sees_function_level_imports(module):
    """Sanity of the walker itself: lazy imports inside functions are in the graph."""
    assert any(n.startswith("reidlib.engine") or n.startswith("reidlib.models") or n.startswith("reidlib.data")
               for n in _graph()[module])


def _notebook_imports(path: Path) -> set[str]:
    import json

    mods: set[str] = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in mods if m.startswith("reidlib")}


@pytest.mark.parametrize("notebook", sorted((PKG.parent / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_never_import_the_runner(notebook):
    """Notebooks are the top floor: they call the library (study, ablations, claims, viz) and record
    through :mod:`reidlib.study.record`; the runner executes them and is never imported by them."""
    modules = _modules()
    used = {_resolve(m, modules) for m in _notebook_imports(notebook)} - {None}
    assert used, f"{notebook.name} imports nothing from reidlib"
    assert not [m for m in used if _is_runner(m)], sorted(used)
