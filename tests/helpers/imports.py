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


def _imported(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            found.add(source)
            # `from trainer import embed` imports the module trainer.embed; `from x import name` may name a function,
            # which is harmless here: callers keep only the names that are modules.
            found.update(f"{source}.{alias.name}" for alias in node.names)
    # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
    return {".".join(parts[:i]) for parts in (n.split(".") for n in found) for i in range(1, len(parts) + 1)}
