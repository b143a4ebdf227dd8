"""The repository's imports, read from the source with ``ast`` (nothing is imported or run).

Every import counts: module-level, inside functions (the lazy imports of heavy packages) and under
``TYPE_CHECKING``, because each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Top-level names that are this repository's own code, not packages to install.
PROJECT_ROOTS = frozenset({"trainer", "app", "assets", "benchmarks", "tests"})


@dataclass(frozen=True)
class Module:
    name: str  # dotted, as Python imports it: "trainer.index.local", "app"
    path: Path
    imports: frozenset[str]  # absolute dotted names this module imports, with every package above them


def read_modules(*paths: str) -> dict[str, Module]:
    """Every ``.py`` file under ``paths`` (folders or files, relative to the repository root), by module name."""
    files: list[Path] = []
    for path in paths:
        target = ROOT / path
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    modules = {}
    for file in files:
        name = module_name(file)
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        modules[name] = Module(name, file, frozenset(_imported(tree, name, file.name == "__init__.py")))
    return modules


def module_name(file: Path) -> str:
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def third_party(module: Module) -> set[str]:
    """Top-level names of what ``module`` imports that is neither the standard library nor this repository."""
    tops = {name.split(".")[0] for name in module.imports}
    return {top for top in tops if top not in sys.stdlib_module_names and top not in PROJECT_ROOTS}


def reachable(start: str, modules: dict[str, Module]) -> set[str]:
    """The project modules that importing ``start`` imports, directly or through others (``start`` excluded)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for name in modules[todo.pop()].imports:
            if name in modules and name not in seen and name != start:
                seen.add(name)
                todo.append(name)
    return seen


def private_uses(module: Module) -> list[str]:
    """Where ``module`` reaches into another project module's private (``_underscore``) names: ``from x import _y``,
    or ``x._y`` on a project module it imported; ``file:line what`` for each."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    found: list[str] = []
    modules: set[str] = set()  # the local names bound to what it imports from the project
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _source(node, package).split(".")[0] in PROJECT_ROOTS:
            source = _source(node, package)
            found += [f"{node.lineno} from {source} import {a.name}" for a in node.names if _private(a.name)]
            modules.update(a.asname or a.name for a in node.names)  # a class's private names count too
        elif isinstance(node, ast.Import):
            tops = [(a.asname or a.name.split(".")[0], a.name.split(".")[0]) for a in node.names]
            modules.update(local for local, top in tops if top in PROJECT_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and _patches_private(node, modules):  # monkeypatch.setattr(x, "_y", ...)
            found.append(f"{node.lineno} {ast.unparse(node)[:80]}")
    where = module.path.relative_to(ROOT) if module.path.is_relative_to(ROOT) else module.path
    return [f"{where}:{entry}" for entry in sorted(set(found), key=lambda e: int(e.split()[0]))]


def _patches_private(call: ast.Call, modules: set[str]) -> bool:
    """``setattr(module, "_name", ...)`` or ``setattr("trainer.module._name", ...)``, as tests patch things."""
    if getattr(call.func, "attr", None) != "setattr":
        return False
    first, second = [*call.args, None, None][:2]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        top, _, last = first.value.rpartition(".")
        return top.split(".")[0] in PROJECT_ROOTS and _private(last)
    named = isinstance(first, ast.Name) and first.id in modules
    return named and isinstance(second, ast.Constant) and isinstance(second.value, str) and _private(second.value)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _source(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _imported(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _source(node, package)
            found.add(source)
            # `from trainer import embed` imports the module trainer.embed; `from x import name` may name a function,
            # which is harmless here: callers keep only the names that are modules.
            found.update(f"{source}.{alias.name}" for alias in node.names)
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
    return {".".join(parts[:i]) for parts in (n.split(".") for n in found) for i in range(1, len(parts) + 1)}
