"""Arrows point down (DESIGN.md): no module of backend/, nor of the Blender side (addon/, operators/,
panels/), imports one that imports it back, through any chain. Every import counts, wherever it
stands: module level, inside a function (the lazy imports that keep the HTTP process torch-free),
under TYPE_CHECKING, and importlib.import_module("literal")."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root` (packages by __init__)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that the module `name` (file `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {m for m in found if m in known and m != name}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a -> ... -> a) per strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                group.append(stack.pop())
                if group[-1] == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle_through(graph, set(group)) for group in groups]


def _circle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return paths[node] + [start]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no circle through {start} in {sorted(group)}")


def import_graph(*packages: str) -> dict[str, set[str]]:
    """module -> the modules it imports, over these top-level folders of the repository (the Blender
    side's relative imports reach from one folder into another: the repository is its package)."""
    names: dict[str, Path] = {}
    for package in packages:
        names.update(module_names(REPO / package))
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def test_the_checker_sees_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "top.py").write_text("from .sub import low\n")
    (pkg / "sub" / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..mid import X\n")
    (pkg / "mid.py").write_text("def f():\n    import importlib\n    return importlib.import_module('pkg.top')\n")
    names = module_names(pkg)
    graph = {name: imports_of(name, path, set(names)) for name, path in names.items()}
    assert graph["pkg.top"] == {"pkg.sub.low"} and graph["pkg.sub.low"] == {"pkg.mid"} and graph["pkg.mid"] == {"pkg.top"}
    assert import_circles(graph) == [["pkg.mid", "pkg.top", "pkg.sub.low", "pkg.mid"]]
    (pkg / "mid.py").write_text("X = 1\n")
    graph["pkg.mid"] = imports_of("pkg.mid", pkg / "mid.py", set(names))
    assert import_circles(graph) == []


def test_backend_has_no_import_circles() -> None:
    graph = import_graph("backend")
    assert "backend.pipelines.refine_mesh" in graph["backend.pipelines.refine"]  # the lazy dispatch is seen
    circles = import_circles(graph)
    assert circles == [], "import circles in backend/: " + "; ".join(" -> ".join(c) for c in circles)


def test_blender_side_has_no_import_circles() -> None:
    graph = import_graph("addon", "operators", "panels")
    assert "panels.settings" in graph["operators.refine_photos"]  # across folders (from ..panels.settings)
    circles = import_circles(graph)
    assert circles == [], "import circles on the Blender side: " + "; ".join(" -> ".join(c) for c in circles)
