"""Import structure of the package: no import cycles, and loading a run does not import the training loop.

The graph holds the imports a module executes when it is imported (module body, class bodies,
``if``/``try`` blocks; not function bodies, which run later, nor ``if TYPE_CHECKING`` blocks).
A cycle there means a module can be met half-initialised depending on which one is imported first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import physgan

ROOT = Path(physgan.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _import_time_nodes(body: list[ast.stmt]):
    """Import statements executed when the module body runs."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _import_time_nodes(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _import_time_nodes(getattr(node, field, []) or [])


def _imported(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{a.name}" for a in node.names]  # a submodule, else (stripped to) the module holding the name


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of physgan it imports at import time}`` (a package import counts as its ``__init__``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in _import_time_nodes(ast.parse(path.read_text()).body):
            for target in _imported(name, path, node):
                while target and target not in mods:  # 'from pkg.mod import func' -> pkg.mod
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph.get(v, ()):
                    comps.append(sorted(comp))
    return comps


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_detector_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_nested_imports():
    graph = import_graph()
    assert "physgan.errors" in graph["physgan.config"]
    assert "physgan.metrics.frechet" in graph["physgan.metrics"]  # 'from physgan.metrics.frechet import fpd'
    assert len(graph) > 50


def test_no_import_cycle_in_the_package():
    assert strongly_connected(import_graph()) == []


def test_loading_a_run_does_not_import_the_training_loop():
    """Inference (physgan.run, the generators) must not pull in the trainer."""
    graph = import_graph()
    for module in ("physgan.run", "physgan.generate_sharded", "physgan.sampling"):
        assert "physgan.train.loop" not in _reachable(graph, module), module
