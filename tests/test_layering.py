"""The package map of docs/architecture.md, enforced: every import of every module of python/scprospatial is
parsed (ast, lazy imports and `if TYPE_CHECKING:` ones included) and checked against three rules.

1. No module imports a private name (`_x`: a private module or a private object) of another subpackage; a
   subpackage's interface is what its `__init__` exports. The root's private modules (`_constants`,
   `_logging`, ...) are the shared core every layer may use.
2. A subpackage imports only the core and subpackages of a lower layer (LAYERS below, the table of
   docs/architecture.md).
3. No import cycle between two modules (lazy imports count: a cycle hidden in a function is still one).

A fourth check keeps the seams of rule 1 honest at run time too: outside its subpackage, no private member of a
class (a method or attribute named `_x` defined by a class of that subpackage) is reached through an object.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PKG = "scprospatial"
ROOT = Path(__file__).resolve().parents[1] / "python" / PKG

# The shared core: private modules of the root that every layer may import (by name, private or not).
CORE = {"__init__", "_constants", "_ext", "_logging", "_plotting", "_settings", "_step_options", "errors"}

# Layer of each subpackage and top-level API module: a unit may import units of a strictly lower layer only.
LAYERS = {
    "vocab": 1, "nn": 1,
    "preprocess": 2, "simulate": 2,
    "io": 3,
    "train": 4,
    "model": 5,
    "evaluate": 6, "spatial": 6,
    "report": 7,
    "pipeline": 8,
    "cli": 9, "pl": 9, "pp": 9, "tl": 9,
    "__main__": 10,
}


def _modules() -> dict[str, Path]:
    """Dotted name (without the package) -> file, e.g. 'spatial._mapping', 'spatial' (its __init__), 'cli'."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


@functools.cache
def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def _package_of(name: str) -> list[str]:
    """The package a module's relative imports start from."""
    path = MODULES[name]
    parts = name.split(".")
    return parts if path.name == "__init__.py" and name != "__init__" else parts[:-1]


def _imports(name: str) -> list[tuple[int, list[str], str | None]]:
    """(line, target module path within the package, imported name or None) for every import of `name` that
    points into the package. `from .x import y` gives (['x'], 'y'); `from . import y` gives ([], 'y')."""
    out = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PKG:
                    out.append((node.lineno, parts[1:], None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name)
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == PKG:
                target = node.module.split(".")[1:]
            else:
                continue
            out.extend((node.lineno, target, alias.name) for alias in node.names)
    return out


def _unit(parts: list[str]) -> str:
    """The subpackage or top-level module a module path belongs to ('__init__' for the root package)."""
    return parts[0] if parts else "__init__"


def _resolve(target: list[str], name: str | None) -> str:
    """The module an import loads: `from .spatial import _stats` loads 'spatial._stats', `from .io import load`
    loads 'io'."""
    dotted = ".".join(target + [name]) if name else ".".join(target)
    if name and dotted in MODULES:
        return dotted
    return ".".join(target) or "__init__"


def _edges():
    for name in MODULES:
        for line, target, imported in _imports(name):
            if not target and imported and imported in MODULES:  # `from .. import spatial`, `from . import cli`
                target, imported = [imported], None
            yield name, line, target, imported


def test_the_map_covers_every_module():
    units = {_unit(n.split(".")) for n in MODULES}
    missing = units - CORE - set(LAYERS)
    assert not missing, f"not in the package map (docs/architecture.md and LAYERS here): {sorted(missing)}"
    assert "spatial._mapping" in MODULES and "model" in MODULES  # the walk found the package


def test_no_private_name_of_another_subpackage_is_imported():
    bad = []
    for name, line, target, imported in _edges():
        src, dst = _unit(name.split(".")), _unit(target)
        if dst in CORE or src == dst:
            continue
        private = [p for p in target[1:] if p.startswith("_")]
        if imported and imported.startswith("_"):
            private.append(imported)
        if private:
            bad.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {'.'.join(target)}"
                       f"{' ' + imported if imported else ''} (private: {', '.join(private)})")
    assert not bad, "imports of another subpackage's private names:\n" + "\n".join(bad)


def test_layers_only_import_downwards():
    bad = []
    for name, line, target, _imported in _edges():
        src, dst = _unit(name.split(".")), _unit(target)
        if dst in CORE or src == dst or src in CORE and dst == "__init__":
            continue
        if src in CORE:
            bad.append(f"{MODULES[name].relative_to(ROOT)}:{line}: the core module imports {dst}")
        elif LAYERS[dst] >= LAYERS[src]:
            bad.append(f"{MODULES[name].relative_to(ROOT)}:{line}: {src} (layer {LAYERS[src]}) imports {dst} "
                       f"(layer {LAYERS[dst]})")
    assert not bad, "imports against the layer order of docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {n: set() for n in MODULES}
    for name, _line, target, imported in _edges():
        dst = _resolve(target, imported)
        if dst != name and dst in MODULES:
            graph[name].add(dst)
    # a package's __init__ importing its own modules is how packages work; a module importing its own package
    # (`from . import x` where x is not a module) is the edge that closes a cycle, so both directions stay in
    cycles, state, stack = [], dict.fromkeys(graph, 0), []

    def visit(n: str) -> None:
        state[n], _ = 1, stack.append(n)
        for m in sorted(graph[n]):
            if state[m] == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif state[m] == 0:
                visit(m)
        state[n], _ = 2, stack.pop()

    for n in sorted(graph):
        if state[n] == 0:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@functools.cache
def _private_members(unit: str) -> frozenset[str]:
    """Private methods and attributes the classes of `unit` define (`def _x`, `self._x = ...`)."""
    names = set()
    for name in MODULES:
        if _unit(name.split(".")) != unit:
            continue
        for cls in (n for n in ast.walk(_tree(name)) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_") \
                        and not node.name.startswith("__"):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                        and isinstance(node.value, ast.Name) and node.value.id == "self" \
                        and node.attr.startswith("_") and not node.attr.startswith("__"):
                    names.add(node.attr)
    return frozenset(names)


@pytest.mark.parametrize("owner", sorted(u for u in LAYERS if (ROOT / u).is_dir()))
def test_no_private_member_of_another_subpackages_classes_is_used(owner):
    private = _private_members(owner)
    bad = []
    for name, path in MODULES.items():
        unit = _unit(name.split("."))
        if unit == owner or unit in CORE:
            continue
        own = _private_members(unit) if (ROOT / unit).is_dir() else frozenset()
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Attribute) and node.attr in private - own and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr} (private to {owner})")
    assert not bad, f"private members of {owner}'s classes used outside it:\n" + "\n".join(bad)


def test_docs_architecture_lists_the_same_layers():
    """The table of docs/architecture.md and LAYERS here say the same thing."""
    import re

    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text()
    documented = {}
    for layer, units in re.findall(r"^\| (\d+) \| ([^|]+) \|", doc, flags=re.M):
        for unit in re.findall(r"`([\w.]+)`", units):
            documented[unit] = int(layer)
    core = re.search(r"^\| core \| ([^|]+) \|", doc, flags=re.M)
    assert core, "docs/architecture.md has no core row"
    assert set(re.findall(r"`([\w.]+)`", core.group(1))) == CORE
    assert documented == LAYERS
