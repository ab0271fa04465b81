"""Imports only run downward: every `vertjax` import goes to the importer's layer or a lower one.

The layers, lowest first, are `LAYERS` below (README.md, "Layout"). Every module under
vertjax/ is parsed with `ast`; module-level and function-level imports count alike (`import x`,
`from x import y`, relative imports), because a lazy import hides a dependency without removing
it. Imports inside an `if TYPE_CHECKING:` block are exempt: they are never executed and only
name types for annotations. Packages in one layer may import each other, but no two modules and
no two packages may import each other, directly or around a cycle.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterable, Iterator, Mapping

import vertjax

ROOT = pathlib.Path(vertjax.__file__).parent
# Top-level modules and packages of vertjax, lowest layer first ("" is vertjax/__init__.py).
LAYERS = (
    ("", "errors", "io_utils", "gin_utils"),
    ("data",),
    ("models",),
    ("train", "convert"),
    ("generators",),
    ("eval", "retrieval", "consistency", "synth"),
    ("system",),
    ("demo", "commands", "cli", "__main__"),
)
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _modules(root: pathlib.Path) -> dict[str, tuple[pathlib.Path, bool]]:
    """Dotted module name -> (file, is_package) for every .py file under `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in `nodes`, at any depth, except in `if TYPE_CHECKING:` bodies."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node))


def imports_of(
    module: str, source: str, *, is_package: bool, known: Mapping[str, object], package: str
) -> Iterator[tuple[int, str]]:
    """(line, imported module) for each import of a module of `package` in `source`.

    `from a import b` names the module `a.b` when that is a module, else `a`; a relative import is
    resolved against `module` (its own package when `is_package`).
    """
    for node in _import_nodes([ast.parse(source)]):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for target in targets:
            if target == package or target.startswith(f"{package}."):
                yield node.lineno, target


def _unit(module: str) -> str:
    """The top-level module or package of vertjax that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> tuple[dict[str, tuple[pathlib.Path, bool]], list[tuple[str, int, str]]]:
    modules = _modules(ROOT)
    edges = []
    for module, (path, is_package) in modules.items():
        source = path.read_text(encoding="utf-8")
        for line, target in imports_of(
            module, source, is_package=is_package, known=modules, package=ROOT.name
        ):
            edges.append((module, line, target))
    return modules, edges


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def test_every_module_has_a_layer():
    modules, _ = _graph()
    unplaced = sorted({_unit(m) for m in modules} - set(LAYER_OF))
    assert not unplaced, f"add these to LAYERS in {__file__}: {unplaced}"


def test_no_import_goes_to_a_higher_layer():
    modules, edges = _graph()
    upward = [
        f"{modules[source][0].relative_to(ROOT.parent)}:{line}: {source} "
        f"({_unit(source) or 'vertjax'}, layer {LAYER_OF[_unit(source)]}) imports {target} "
        f"({_unit(target)}, layer {LAYER_OF[_unit(target)]})"
        for source, line, target in edges
        if LAYER_OF.get(_unit(target), -1) > LAYER_OF.get(_unit(source), len(LAYERS))
    ]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    _, edges = _graph()
    cycles = _cycles({(source, target) for source, _, target in edges})
    assert not cycles, "modules that import each other:\n" + "\n".join(map(str, cycles))


def test_no_import_cycle_between_packages():
    _, edges = _graph()
    cycles = _cycles({(_unit(source), _unit(target)) for source, _, target in edges})
    assert not cycles, "packages that import each other:\n" + "\n".join(map(str, cycles))


def test_imports_of_sees_lazy_relative_and_plain_imports_but_not_type_checking_ones():
    source = (
        "import typing\n"
        "import vertjax.data.vocab as v\n"
        "from . import t5\n"
        "from ..train import checkpoints\n"
        "if typing.TYPE_CHECKING:\n"
        "    from vertjax.system import assistant\n"
        "else:\n"
        "    from vertjax import errors\n"
        "def f():\n"
        "    from vertjax.retrieval.types import Hit\n"
    )
    known = {"vertjax.errors", "vertjax.models.t5", "vertjax.train.checkpoints"}
    found = list(
        imports_of("vertjax.models.x", source, is_package=False, known=known, package="vertjax")
    )
    assert found == [
        (2, "vertjax.data.vocab"),
        (3, "vertjax.models.t5"),
        (4, "vertjax.train.checkpoints"),
        (8, "vertjax.errors"),
        (10, "vertjax.retrieval.types"),
    ]
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
