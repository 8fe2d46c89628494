"""The engine (``sync_pipelines/sync/``) is a library: importing it loads no Dagster, and its modules import one
another one way only, at the top of each module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sync_pipelines.sync

ENGINE = Path(sync_pipelines.sync.__file__).parent


@pytest.mark.unit
def test_importing_every_engine_module_loads_no_dagster() -> None:
    script = (
        "import importlib, pkgutil, sys, sync_pipelines.sync as engine\n"
        "for module in pkgutil.iter_modules(engine.__path__):\n"
        "    importlib.import_module(f'sync_pipelines.sync.{module.name}')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'dagster'))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert loaded.stdout.strip() == "[]"


def _engine_imports() -> dict[str, tuple[set[str], set[str]]]:
    """Per engine module, the engine modules it imports at its top, and those it imports anywhere else."""
    modules = {path.stem for path in ENGINE.glob("*.py") if path.stem != "__init__"}
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name in modules:
        tree = ast.parse((ENGINE / f"{name}.py").read_text())
        top = {id(node) for node in tree.body}
        at_top, inside = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sync_pipelines.sync."):
                imported = node.module.split(".")[2]
                (at_top if id(node) in top else inside).add(imported)
        found[name] = (at_top, inside)
    return found


@pytest.mark.unit
def test_engine_modules_import_each_other_at_the_top_without_a_cycle() -> None:
    imports = _engine_imports()
    assert {name: inside for name, (_, inside) in imports.items() if inside} == {}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for imported in imports[name][0]:
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in imports:
        visit(name)
