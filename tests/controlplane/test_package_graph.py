"""controlplane's top-level parts import one another one way: no package cycle.

Each top-level subpackage (``storage``, ``access``, ``api``, ...) and module (``app``,
``config``, ...) of controlplane is a node; an import anywhere in one part of a name in
another is an edge, whether at module level or inside a function (a deferred import is
still a dependency). Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "controlplane"
#: The node of ``controlplane/__init__.py`` (``from controlplane import hookimpl``).
PACKAGE_ROOT = "controlplane"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module name an import in ``tree`` may load, with its line, outside ``if TYPE_CHECKING:``.

    ``from a.b import c`` yields both ``a.b`` and ``a.b.c`` (``c`` may be a submodule);
    relative imports are resolved against ``module``.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.append(ast.Module(body=child.orelse, type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join([*parts, *([child.module] if child.module else [])])
                else:
                    base = child.module or ""
                yield base, child.lineno
                for alias in child.names:
                    yield f"{base}.{alias.name}", child.lineno
            stack.append(child)


def part_of(module: str) -> str | None:
    """The top-level part of controlplane that ``module`` belongs to (None: outside controlplane)."""
    parts = module.split(".")
    if parts[0] != PACKAGE_ROOT:
        return None
    if len(parts) == 1:
        return PACKAGE_ROOT
    name = parts[1]
    if (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file():
        return name
    return PACKAGE_ROOT  # a name defined in controlplane/__init__.py


def package_graph(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """``{part: {imported part: ["file:line", ...]}}`` over every Python file under ``root``."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        is_package = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_package else rel.parts)
        source = part_of(module)
        assert source is not None
        graph.setdefault(source, {})
        for name, line in imported_modules(ast.parse(path.read_text(), str(path)), module, is_package):
            target = part_of(name)
            if target is not None and target != source:
                where = f"{path.relative_to(root.parent)}:{line}"
                sites = graph[source].setdefault(target, [])
                if where not in sites:
                    sites.append(where)
    return graph


def find_cycles(graph: Mapping[str, Mapping[str, object]]) -> list[list[str]]:
    """Cycles among the nodes of ``graph``, each as ``[a, b, ..., a]``, sorted.

    For every strongly connected component of more than one node (Tarjan's algorithm),
    a shortest cycle through each of its nodes, so that every part caught in a cycle is named.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: set[tuple[str, ...]] = set()
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, {}))))]
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, {})))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while node not in component:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                    if len(component) > 1:
                        cycles.update(_shortest_cycle(graph, component, member) for member in component)
    return sorted(list(cycle) for cycle in cycles)


def _shortest_cycle(
    graph: Mapping[str, Mapping[str, object]], component: set[str], start: str
) -> tuple[str, ...]:
    """A shortest cycle from ``start`` back to it within ``component``, rotated to begin at its least node."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, {})):
                if target == start:
                    cycle = paths[node]
                    first = cycle.index(min(cycle))
                    rotated = cycle[first:] + cycle[:first]
                    return (*rotated, rotated[0])
                if target in component and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle of {sorted(component)}")


def describe(cycle: list[str], graph: Mapping[str, Mapping[str, list[str]]]) -> str:
    """``a -> b (file:line) -> a (file:line)``: a cycle with one import site of each edge."""
    steps = [cycle[0]]
    for source, target in zip(cycle, cycle[1:], strict=False):
        sites = graph.get(source, {}).get(target, [])
        steps.append(f"{target} ({sites[0]})" if sites else target)
    return " -> ".join(steps)


# --- the finder itself, on tiny graphs --------------------------------------------


def test_the_cycle_finder_finds_a_two_node_cycle() -> None:
    graph = {"a": {"b": ["a.py:1"]}, "b": {"a": ["b.py:2"]}, "c": {"a": ["c.py:3"]}}
    assert find_cycles(graph) == [["a", "b", "a"]]
    assert describe(["a", "b", "a"], graph) == "a -> b (a.py:1) -> a (b.py:2)"


def test_the_cycle_finder_finds_a_longer_cycle_and_ignores_a_diamond() -> None:
    graph = {
        "api": {"scheduler": [], "domain": []},
        "scheduler": {"storage": [], "domain": []},
        "storage": {"domain": [], "api": []},
        "domain": {},
    }
    assert find_cycles(graph) == [["api", "scheduler", "storage", "api"]]
    graph["storage"].pop("api")
    assert find_cycles(graph) == []
    graph["domain"]["api"] = ["domain.py:1"]  # one component of four: a cycle through each part
    assert find_cycles(graph) == [
        ["api", "domain", "api"],
        ["api", "scheduler", "domain", "api"],
        ["api", "scheduler", "storage", "domain", "api"],
    ]


def test_the_cycle_finder_reports_each_separate_cycle() -> None:
    graph = {"a": {"b": []}, "b": {"a": []}, "c": {"d": []}, "d": {"c": []}, "e": {"a": [], "c": []}}
    assert find_cycles(graph) == [["a", "b", "a"], ["c", "d", "c"]]


def test_imports_are_read_at_every_level_except_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import controlplane.domain.model\n"
        "from . import errors\n"
        "from ..storage.base import WriteBatch\n"
        "if TYPE_CHECKING:\n"
        "    from controlplane.app import App\n"
        "else:\n"
        "    import controlplane.config\n"
        "def late():\n"
        "    from controlplane.access import records\n"
    )
    found = {name for name, _ in imported_modules(ast.parse(source), "controlplane.api.server", False)}
    parts = {part_of(name) for name in found} - {None}
    assert parts == {"domain", "api", "storage", "config", "access"}
    assert "controlplane.app" not in found and "controlplane.app.App" not in found


# --- controlplane ------------------------------------------------------------------


def test_controlplane_has_no_package_cycle() -> None:
    graph = package_graph()
    assert {"storage", "scheduler", "api", "app", "domain"} <= set(graph)  # the walk saw the code
    cycles = find_cycles(graph)
    assert not cycles, "package cycles in controlplane:\n" + "\n".join(describe(c, graph) for c in cycles)
