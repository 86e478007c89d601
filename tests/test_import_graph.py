"""The agents' modules import one another without a cycle, and no algorithm module builds on
another algorithm's module (read from the sources' top-level imports with ``ast``), and each
algorithm module stays under 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import revflow
from revflow.agents.registry import AGENTS

SRC = Path(revflow.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported by statements at module level (not inside functions)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return out


def _graph(prefix: str) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {
        name: {m for m in _top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
        if name.startswith(prefix)
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_agent_modules() -> None:
    graph = _graph("revflow.agents")
    assert "revflow.agents.registry" in graph
    assert _cycle(graph) is None


def test_no_algorithm_module_imports_another() -> None:
    algorithms = {target.partition(":")[0] for target in AGENTS.values()}
    graph = _graph("revflow.agents")
    for module in algorithms:
        assert not graph[module] & (algorithms - {module}), module


def test_every_algorithm_module_stays_under_300_lines() -> None:
    """An algorithm's file holds its config, objective and agent class, nothing shared."""
    for target in AGENTS.values():
        path = SRC.parent / (target.partition(":")[0].replace(".", "/") + ".py")
        lines = len(path.read_text().splitlines())
        assert lines < 300, f"{path.name}: {lines} lines"
