"""The package's import graph, read from the source (every import, also those inside functions).

    python -m tests.import_graph            # the graph by layer, and any upward edge or cycle

Used by ``tests/test_architecture.py``: layers only point down (see ``LAYERS``) and the modules
import each other without cycles.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "maml_probe"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Layers from the bottom up. A module may import from its own layer or any layer below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "io", "stats", "device", "paper", "losses"),   # no maml_probe imports
    ("tasks", "models", "rules"),                                # the mathematical objects
    ("data", "inner", "fast", "maml", "learner", "checkpoint"),  # data and the MAML engine
    ("evaluation", "config", "engine_choice"),                   # scoring, what a run is
    ("train", "distributed"),                                    # the meta-training loop
    ("probes", "runs"),                                          # probes of trained models
    ("experiments",),                                            # E1..E11, sweeps
    ("report", "runner", "explorer", "plots"),                   # what users drive
    ("cli", "__main__", "__init__", "launch"),                          # entry points, public API
)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """``dotted name -> file`` of every module of the package."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> Iterator[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" for a in node.names] + [stem]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.startswith(PACKAGE):
                yield target


def graph() -> dict[str, set[str]]:
    """``module -> modules of the package it imports`` (itself excluded)."""
    mods = modules()
    known = set(mods)
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set(_imports(path, name, known)) - {name}
        # ``from . import x`` inside package P names P too; keep the submodule only
        deps -= {d for d in deps if any(o.startswith(d + ".") for o in deps)
                 and name.startswith(d + ".")}
        out[name] = deps
    return out


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the top-level part of ``module`` (``maml_probe`` is ``__init__``)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise KeyError(f"{module} belongs to no layer of tests/import_graph.py LAYERS; add it there")


def upward_edges(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer into a higher one."""
    return sorted((a, b) for a, deps in g.items() for b in deps if layer_of(b) > layer_of(a))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    g = graph()
    for i, layer in enumerate(LAYERS):
        print(f"layer {i}: {', '.join(layer)}")
        for m in sorted(m for m in g if layer_of(m) == i):
            print(f"    {m} -> {', '.join(sorted(g[m])) or '-'}")
    print("upward edges:", upward_edges(g) or "none")
    print("cycles:", cycles(g) or "none")
