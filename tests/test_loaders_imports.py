"""The loaders import graph: plain imports only, no cycle, and discovery knows nothing of the corpora.

Read statically (`ast`), so an import hidden inside a function to dodge a cycle counts like any other, and
an `importlib.import_module` of a loaders module (which this check could not follow) is refused."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import loaders

PACKAGE = Path(loaders.__file__).parent


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """The loaders modules a module imports, wherever the import statement is (module level or not)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                target = node.module
            elif node.level == 0 and node.module and node.module.split(".")[0] == "loaders":
                target = node.module.partition(".")[2] or None
            else:
                continue
            if target is None:  # `from . import a, b` or `from loaders import a`
                found.update(alias.name for alias in node.names if alias.name in modules)
            else:
                found.add(target.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "loaders" and len(parts) > 1:
                    found.add(parts[1])
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imported(tree, set(modules)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle_through_a_function_level_import():
    tree = ast.parse("def scan():\n    from .registry import CORPORA\n")
    graph = {"discovery": _imported(tree, {"registry", "discovery"}), "registry": {"discovery"}}
    assert find_cycle(graph) == ["discovery", "registry", "discovery"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_loaders_import_graph_is_acyclic():
    graph = import_graph()
    assert {"registry", "discovery", "builder", "legacy"} <= set(graph)  # the walk saw the package
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in loaders: {' -> '.join(cycle)}"


def test_discovery_is_file_walking_only():
    """discovery walks folders for whatever grammar it is given: it imports no other loaders module."""
    assert import_graph()["discovery"] == set()


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_dynamic_import_of_loaders_modules(name):
    source = _modules()[name].read_text(encoding="utf-8")
    tree = ast.parse(source)
    dynamic = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and any(isinstance(arg, ast.Name) and arg.id in {"__package__", "__name__"} for arg in node.args[1:])
    ]
    if name == "__init__":  # the lazy exports: a table, read by a test of its own
        return
    assert not dynamic, f"loaders/{name}.py imports a loaders module by name at line(s) {dynamic}"


def test_every_lazy_export_of_the_package_resolves():
    """`loaders/__init__.py` imports its exports by name from a table: each entry must name a real object."""
    for name in loaders.__all__:
        assert getattr(loaders, name) is not None, name
    assert loaders.find_corpus_dir is loaders.registry.find_corpus_dir
    assert loaders.scan_corpus is loaders.registry.scan_corpus


def test_discovery_imports_alone():
    """At run time too: importing discovery loads no other loaders module (nor `datasets`)."""
    code = (
        "import sys, loaders.discovery\n"
        "print(sorted(m for m in sys.modules if m.startswith('loaders.') or m == 'datasets'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['loaders.discovery']"
