"""Which way imports go (DESIGN.md): the core never imports a plugin, plugins import only the
public SDK, and no module imports itself through others.

Every ``import`` counts, also those inside functions (a lazy import is still a dependency);
only imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "platform"
PLUGINS = REPO / "plugins"
TEMPLATE = REPO / "examples" / "plugin-template"

#: what a plugin may import from nasforge: the SDK modules, and only public names
PUBLIC_SDK = {"nasforge", "nasforge.nn", "nasforge.testing"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {
        module_name(p, root): p
        for p in sorted(root.rglob("*.py"))
        if "tests" not in p.relative_to(root).parts
    }


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports(path: Path, name: str) -> Iterator[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every import that can run, relative imports
    resolved against ``name`` (the importing module)."""
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST) -> Iterator[tuple[str, list[str], int]]:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                yield from (x for orelse in child.orelse for x in visit_one(orelse))
                continue
            yield from visit_one(child)

    def visit_one(node: ast.AST) -> Iterator[tuple[str, list[str], int]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".")
                package = package if is_package else package[:-1]
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno
        yield from visit(node)

    yield from visit(ast.parse(path.read_text(), str(path)))


def test_the_core_never_imports_a_plugin():
    found = [
        f"{path.relative_to(REPO)}:{line}: imports {target}"
        for name, path in modules(CORE).items()
        for target, _, line in imports(path, name)
        if target.split(".")[0].startswith("nasforge_")
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("root", [PLUGINS, TEMPLATE], ids=["first-party", "template"])
def test_plugins_import_only_the_public_sdk(root):
    found = []
    for name, path in modules(root).items():
        for target, names, line in imports(path, name):
            where = f"{path.relative_to(REPO)}:{line}"
            if target.split(".")[0] != "nasforge":
                continue
            if target not in PUBLIC_SDK:
                found.append(f"{where}: imports {target} (public: {sorted(PUBLIC_SDK)})")
            found += [f"{where}: imports the private {target}.{n}" for n in names if n[0] == "_"]
    assert not found, "\n".join(found)


def test_nothing_imports_in_a_circle():
    graph: dict[str, set[str]] = {}
    everything = {**modules(CORE), **modules(PLUGINS)}
    for name, path in everything.items():
        targets = set()
        for target, names, _ in imports(path, name):
            # `from package import module` depends on the module, else on the package
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in everything]
            targets.update(subs or ([target] if target in everything else []))
        graph[name] = targets - {name}
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_checks_above_catch_what_they_look_for(tmp_path):
    """A core module importing a plugin, a plugin importing an internal, and a cycle."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(
        "from . import b\nfrom nasforge.engine import run_search\nimport nasforge_cnn\n"
    )
    (tmp_path / "pkg" / "b.py").write_text(
        "def f():\n    from .a import g\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nasforge.plan import Plan\n"
    )
    found = {
        (name, target)
        for name, path in modules(tmp_path).items()
        for target, _, _ in imports(path, name)
    }
    assert ("pkg.a", "nasforge_cnn") in found and ("pkg.a", "nasforge.engine") in found
    assert ("pkg.b", "pkg.a") in found and ("pkg.b", "nasforge.plan") not in found
    assert _cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}) == [
        ["pkg.a", "pkg.b"]
    ]


def test_every_import_of_nasforge_names_something_that_exists():
    """Lazy imports inside functions run only when called: check them all here."""
    import importlib
    import importlib.util

    everything = {**modules(CORE), **modules(PLUGINS)}
    found = []
    for name, path in everything.items():
        for target, names, line in imports(path, name):
            if not target.startswith("nasforge"):
                continue
            where = f"{path.relative_to(REPO)}:{line}"
            if importlib.util.find_spec(target) is None:
                found.append(f"{where}: no module {target}")
                continue
            module = importlib.import_module(target)
            found += [
                f"{where}: {target} has no {n}"
                for n in names
                if f"{target}.{n}" not in everything and not hasattr(module, n)
            ]
    assert not found, "\n".join(found)


def test_a_worker_imports_only_what_its_estimator_needs():
    """A search worker builds its evaluator from the experiment: for a table-backed space
    (the Cora example) that must not drag in PyTorch or transformers (seconds of import
    and hundreds of MB per worker process, times every worker of a cluster)."""
    code = (
        "import sys, yaml\n"
        "from nasforge.engine.worker import Evaluator\n"
        "exp = yaml.safe_load(open('examples/gnn_nasbench_cora.yaml'))\n"
        "Evaluator.build(exp, 'unused').evaluate({'link': [0, 0, 1, 2], "
        "'ops': ['gcn', 'gat', 'sage', 'gin']})\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'sklearn') "
        "if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
