"""No import cycles between the packages of `core/` (every `import` counts, also those inside functions).

The job runtime (`core/jobs`) imports no domain; domains register handlers with it. A cycle between two
domain packages means one of them must hand the other an extension point instead (a registry, a hook).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Pure ML code (no database, no tenants) is left out: the engine, its evaluation and the testbed still import
# one another (spare ↔ evaluation ↔ testbed), and no domain package is part of that.
ML_PACKAGES = {"spare", "evaluation", "testbed"}
# The composition root (the CLI's commands wire everything together) may import anything.
ROOTS = {"cli"}


def package_graph(root: Path) -> dict[str, set[str]]:
    """package → packages it imports, for the sub-packages of `root/core` (modules directly in core/ are
    shared infrastructure, not nodes)."""
    core = root / "core"
    packages = {p.name for p in core.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}

    def package_of(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "core" and parts[1] in packages else None

    graph: dict[str, set[str]] = {p: set() for p in packages}
    for name in packages:
        for path in (core / name).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                else:
                    continue
                for module in modules:
                    target = package_of(module)
                    if target is not None and target != name:
                        graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan), each sorted."""
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


def domain_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    skip = ML_PACKAGES | ROOTS
    return {p: {q for q in deps if q not in skip} for p, deps in graph.items() if p not in skip}


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    return "; ".join(f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component)


def test_no_cycles_between_domain_packages() -> None:
    graph = domain_graph(package_graph(ROOT))
    assert {"jobs", "erasure", "registry", "audit"} <= set(graph)
    found = cycles(graph)
    assert found == [], "import cycles between core packages: " + " | ".join(describe(graph, c) for c in found)


def test_the_job_runtime_imports_no_domain() -> None:
    graph = package_graph(ROOT)
    assert graph["jobs"] <= {"outbox", "storage"}, f"core.jobs imports {sorted(graph['jobs'])}"


def test_a_constructed_cycle_is_found(tmp_path: Path) -> None:
    """The check really fails on a cycle: two packages that import each other, one of them inside a function."""
    core = tmp_path / "core"
    for name, body in {
        "alpha": "from core.beta.thing import x\n",
        "beta": "def f():\n    import core.alpha.mod\n",
        "gamma": "import core.alpha\n",
    }.items():
        (core / name).mkdir(parents=True)
        (core / name / "__init__.py").write_text("")
        (core / name / "mod.py").write_text(body)
    graph = package_graph(tmp_path)
    assert graph == {"alpha": {"beta"}, "beta": {"alpha"}, "gamma": {"alpha"}}
    assert cycles(graph) == [["alpha", "beta"]]
    assert cycles({"alpha": {"beta"}, "beta": set(), "gamma": {"alpha"}}) == []
