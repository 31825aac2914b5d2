"""The shape of the code the issue tracker asked to keep: no import cycle, no long function.

Both read the source with :mod:`ast` (nothing is imported), so they also see
imports made inside functions, which a runtime check would miss.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "geojson_api"
MAX_FUNCTION_LINES = 60
LONG_MARK = "# Long:"
"""How a function over MAX_FUNCTION_LINES says why (a comment inside it or just above)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Package modules ``name`` imports anywhere in its source (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from . import x` names a module x; `from .m import f` names m.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # geojson_api.lab.x.y -> the module
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert "geojson_api.catalog" in graph["geojson_api.pipeline"]  # the parser sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_catalog_knows_no_builder_and_no_job_runner() -> None:
    graph = import_graph()
    for module in ("jobs", "tasks", "features.sqlite_index", "features.indexes", "pipeline"):
        assert f"geojson_api.{module}" not in graph["geojson_api.catalog"], module
    assert "geojson_api.tasks" not in graph["geojson_api.jobs"]


def long_functions(path: Path) -> Iterator[str]:
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        end = node.end_lineno or node.lineno
        if end - node.lineno + 1 <= MAX_FUNCTION_LINES:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        around = lines[max(first - 3, 0):end]
        if not any(line.strip().startswith(LONG_MARK) for line in around):
            yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({end - node.lineno + 1})"


def test_no_function_over_60_lines_without_a_reason() -> None:
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "loadtest").rglob("*.py"),
               *(ROOT / "scripts").glob("*.py"), *(ROOT / "deploy").rglob("*.py")]
    assert [hit for path in sorted(sources) for hit in long_functions(path)] == []
