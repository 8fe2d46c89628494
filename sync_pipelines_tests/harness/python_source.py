"""The project's own Python files parsed, for the tests that read its structure (imports, strings).

CPython 3.11 counts the depth of an AST's conversion in one counter per interpreter. A garbage collection during
``ast.parse`` can run a finalizer (a database connection an earlier test dropped, logging its reset) whose
traceback formatting parses a line of source again, and the outer parse then fails with "AST constructor
recursion depth mismatch". The collector is paused while a file is parsed, so such finalizers run after it.
"""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    """``path``'s syntax tree."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), filename=str(path))
    finally:
        if was_enabled:
            gc.enable()


def _module_name(package: Path, path: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(package: Path) -> dict[str, tuple[set[str], set[str]]]:
    """Per module of ``package``, the project modules it imports at its top, and those it imports anywhere
    else (inside a function or a class), imports of names from a package's ``__init__`` included."""
    paths = {_module_name(package, path): path for path in package.rglob("*.py")}
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name, path in paths.items():
        tree = parse_file(path)
        top = {id(node) for node in tree.body}
        at_top: set[str] = set()
        inside: set[str] = set()
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sync_pipelines"):
                module = node.module or ""
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    targets.append(submodule if submodule in paths else module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("sync_pipelines")]
            (at_top if id(node) in top else inside).update(t for t in targets if t in paths and t != name)
        found[name] = (at_top, inside)
    return found
