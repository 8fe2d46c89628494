"""The engine (``sync_pipelines/sync/``) and the machinery under it (``sync_pipelines/core/``) are a library:
importing them loads no Dagster; and the code location's modules import one another one way only, at the top of
each module."""

import subprocess
import sys
from pathlib import Path

import pytest

import sync_pipelines.sync
from sync_pipelines_tests.harness.python_source import project_imports

ENGINE = Path(sync_pipelines.sync.__file__).parent


@pytest.mark.unit
def test_importing_every_engine_and_core_module_loads_no_dagster() -> None:
    script = (
        "import importlib, pkgutil, sys, sync_pipelines.sync, sync_pipelines.core\n"
        "for package in (sync_pipelines.sync, sync_pipelines.core):\n"
        "    for module in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(f'{package.__name__}.{module.name}')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'dagster'))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert loaded.stdout.strip() == "[]"


PACKAGE = ENGINE.parent


@pytest.mark.unit
def test_the_code_locations_modules_import_each_other_at_the_top_without_a_cycle() -> None:
    imports = project_imports(PACKAGE)
    assert {name: inside for name, (_, inside) in imports.items() if inside} == {}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for imported in sorted(imports[name][0]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(imports):
        visit(name)
