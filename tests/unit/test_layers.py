"""The layering stays true: imports run only downwards, no module imports itself round a circle, modules stay small.

    amiflow_app                     the shell: CLI, serve, demo, report, HTTP API, embedded broker
        |
    billing_bridge -> rating        services (billing_bridge may use rating, never the reverse)
    ingest    simulators
        |
    protocols                       codecs and transports
        |
    amiflow                         the core: settings, errors, types, uri, db

Every import counts, including those inside functions (a lazy import is still a dependency). The check reads the
source with ``ast``; it imports nothing.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("amiflow", "amiflow_app", "protocols", "ingest", "rating", "billing_bridge", "simulators")
# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "amiflow": frozenset(),
    "protocols": frozenset({"amiflow"}),
    "ingest": frozenset({"protocols", "amiflow"}),
    "rating": frozenset({"protocols", "amiflow"}),
    "simulators": frozenset({"protocols", "amiflow"}),
    "billing_bridge": frozenset({"rating", "protocols", "amiflow"}),
    "amiflow_app": frozenset(PACKAGES) - {"amiflow_app"},
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The project modules an ``from ... import ...`` names (a name may be a submodule or an attribute)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    names = [f"{target}.{alias.name}" for alias in node.names]
    return [n for n in names if n in MODULES] or [target]


def _imports(name: str, path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.update(_resolve(name, path.name == "__init__.py", node))
    return {i for i in out if i.split(".")[0] in PACKAGES}


def _project_module(name: str) -> str | None:
    """The longest known module that ``name`` is or lies in (``a.b.attr`` -> ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH: dict[str, set[str]] = {
    name: {m for i in _imports(name, path) if (m := _project_module(i)) and m != name} for name, path in MODULES.items()
}


def test_imports_only_run_downwards() -> None:
    upward = sorted(
        f"{src} imports {dst}"
        for src, targets in GRAPH.items()
        for dst in targets
        if (a := src.split(".")[0]) != (b := dst.split(".")[0]) and b not in ALLOWED[a]
    )
    assert not upward, "imports that run upwards or sideways:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _without_package_reexports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package ``__init__`` re-exporting its own submodules is not a circle of ideas: drop those edges."""
    pruned: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        is_package = MODULES[src].name == "__init__.py"
        pruned[src] = {t for t in targets if not (is_package and t.startswith(src + "."))}
    return pruned


def test_no_import_circles() -> None:
    cycles = _cycles(_without_package_reexports(GRAPH))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_modules_are_small() -> None:
    big = sorted(
        f"{name}: {n} lines"
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    )
    assert not big, f"modules over {MAX_LINES} lines (split them by responsibility):\n" + "\n".join(big)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_checker_sees_each_package(package: str) -> None:
    # guards against a silent pass: the walk must find modules and imports in every package
    assert any(name.split(".")[0] == package for name in MODULES)
    assert any(GRAPH[name] for name in MODULES if name.split(".")[0] == package)


def test_the_checker_catches_an_upward_import() -> None:
    graph = {"protocols.x": {"ingest.y"}, "ingest.y": {"protocols.x"}}
    assert _cycles(graph) == [["ingest.y", "protocols.x"]]
    assert "ingest" not in ALLOWED["protocols"]
