"""No import cycle in hdcnn: between its packages and top-level modules, lazy imports included.

Each module of ``hdcnn`` belongs to a unit: its top-level module (``hdcnn.config``) or its
sub-package (``hdcnn.cascade`` for ``hdcnn.cascade.rules``). Every ``import`` statement, also
inside functions (a lazy import is still a dependency), adds an edge between units; imports
under ``if TYPE_CHECKING:`` do not (they never run). The graph must have no cycle, so each
unit can be read, tested and changed with only the units below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hdcnn"


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(getattr(node, "orelse", []))
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
        stack.extend(ast.iter_child_nodes(node))
    return {name for name in found if name == "hdcnn" or name.startswith("hdcnn.")}


def dependency_graph() -> dict[str, set[str]]:
    """unit -> the units it imports (itself and the bare ``hdcnn`` package left out)."""
    graph: dict[str, set[str]] = {}
    for module, path in _modules().items():
        unit = _unit(module)
        if unit == "hdcnn":
            continue
        edges = graph.setdefault(unit, set())
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _imports(tree, module, path.name == "__init__.py"):
            target = _unit(name)
            if target not in (unit, "hdcnn"):
                edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    graph = {
        "hdcnn.a": {"hdcnn.b"},
        "hdcnn.b": {"hdcnn.c"},
        "hdcnn.c": {"hdcnn.a"},
        "hdcnn.d": set(),
    }
    assert cycles(graph) == [["hdcnn.a", "hdcnn.b", "hdcnn.c"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hdcnn.x\n"
        "def f():\n    from hdcnn.cascade import rules\n    from . import y\n"
    )
    assert _imports(tree, "hdcnn.evaluation.engine", False) == {
        "hdcnn.cascade",
        "hdcnn.evaluation",
    }


def test_hdcnn_has_no_import_cycle() -> None:
    graph = dependency_graph()
    assert "hdcnn.cascade" in graph and "hdcnn.config" in graph
    assert "hdcnn.evaluation" not in graph["hdcnn.cascade"]
    assert "hdcnn.config" not in graph["hdcnn.domain"]
    assert cycles(graph) == []
