"""The layout's dependency rules, read from the source (every import statement, also those inside functions):
no import cycles among genbench's and reference_models' modules, and genbench never imports the built-in
families (reference_models depends on genbench.models, never the reverse)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("genbench", "reference_models")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _owner(name: str, mods) -> str:
    """The longest known module that `name` (a module, or a module's attribute) lies in; "" if outside."""
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        deps = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {_owner(a.name, mods) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:  # `from pkg import submodule` depends on the submodule, else on pkg
                    sub = f"{src}.{a.name}"
                    deps.add(sub if sub in mods else _owner(src, mods))
        deps.discard("")
        deps.discard(mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert "genbench.models.registry" in graph and "reference_models.gan" in graph  # the walk saw the tree
    assert cycles(graph) == []


def test_genbench_never_imports_the_reference_families():
    graph = import_graph()
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("genbench")
                 for d in deps if d.startswith("reference_models"))
    assert bad == []
    assert any(d.startswith("genbench.models") for d in graph["reference_models.gan"])


def test_backward_compatible_names_are_the_same_objects():
    import genbench.external
    import reference_models
    import reference_models.base
    import reference_models.checkpoint
    from genbench import models
    from genbench.models import base, checkpoint, registry

    assert reference_models.base.GenerativeModel is base.GenerativeModel
    assert reference_models.create_model is models.create_model is registry.create_model
    assert reference_models.checkpoint.CheckpointError is checkpoint.CheckpointError
    assert genbench.external.register_external is registry.register_external
    assert "ddpm" in reference_models.list_models()
