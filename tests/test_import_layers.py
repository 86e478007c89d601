"""The environment and training-loop modules import one way: no import cycle runs through
them, counting every ``import revflow...`` / ``from revflow... import`` statement of the
package, those inside functions included (read with ``ast``, nothing is imported)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Bottom first: a module may import those before it, never one after it.
ENV_LAYERS = ("dmc_suite", "mjx_tasks", "jax_envs", "envs")
LOOP_LAYERS = ("overrides", "checkpoint", "loop_config", "schedule", "rundir", "engine")
#: The modules no cycle may run through.
CHECKED = {
    *ENV_LAYERS,
    *LOOP_LAYERS,
    "compiled",
    "sweep",
    "report",
    "replay",
    "metrics_log",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "revflow").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """``module -> the revflow modules it imports`` (anywhere in its file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from revflow import rundir`` imports the submodule revflow.rundir.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [node.module, *(s for s in subs if s in modules)]
            for target in targets:
                while target and target not in modules:  # revflow.x.y -> revflow.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles_through(graph: dict[str, set[str]], start: str) -> list[list[str]]:
    """The import paths from ``start`` back to itself (one per first step), if any."""
    found = []
    for first in sorted(graph[start]):
        seen, stack = {first}, [(first, [start, first])]
        while stack:
            node, path = stack.pop()
            if node == start:
                found.append(path)
                break
            for nxt in sorted(graph[node]):
                if nxt == start or nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "revflow.jax_envs" in graph["revflow.envs"]  # only inside functions
    assert "revflow.rundir" in graph["revflow.engine"]  # ``from revflow import rundir``


@pytest.mark.parametrize("module", sorted(CHECKED))
def test_no_import_cycle_runs_through(module: str) -> None:
    graph = import_graph()
    assert cycles_through(graph, f"revflow.{module}") == []


@pytest.mark.parametrize("layers", [ENV_LAYERS, LOOP_LAYERS])
def test_lower_modules_do_not_import_higher_ones(layers: tuple[str, ...]) -> None:
    graph = import_graph()
    for i, module in enumerate(layers):
        higher = {f"revflow.{m}" for m in layers[i + 1 :]} | {"revflow.compiled"}
        assert not graph[f"revflow.{module}"] & higher, module
