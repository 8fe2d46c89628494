"""One registry: ``defs/syncs.py`` is the only module of the code location that imports a sync's domain; the
builder, ``systems.py``, the code location's assembly and the operations jobs read the specs they are given, so
adding a sync is one folder and one line in that list."""

from __future__ import annotations

from pathlib import Path

import pytest

import sync_pipelines
from sync_pipelines.defs.code_location import code_location
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines_tests.harness.python_source import project_imports

PACKAGE = Path(sync_pipelines.__file__).parent
REGISTRY = "sync_pipelines.defs.syncs"
# The folders under defs/ that every sync shares; every other folder is a domain (a sync, or an upstream asset).
NOT_DOMAINS = {"shared", "operations"}
DOMAINS = {
    f"sync_pipelines.defs.{path.name}"
    for path in (PACKAGE / "defs").iterdir()
    if path.is_dir() and (path / "__init__.py").exists() and path.name not in NOT_DOMAINS
}


def _imports() -> dict[str, set[str]]:
    """Per module of the code location, the project modules it imports (anywhere in it)."""
    return {name: at_top | inside for name, (at_top, inside) in project_imports(PACKAGE).items()}


def _in_domain(module: str) -> bool:
    return any(module == domain or module.startswith(f"{domain}.") for domain in DOMAINS)


def _reached(start: str, imports: dict[str, set[str]]) -> set[str]:
    """Every module ``start`` loads, directly or through others."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in imports[stack.pop()] - seen:
            seen.add(target)
            stack.append(target)
    return seen


@pytest.mark.unit
def test_the_domains_are_the_folders_the_registered_syncs_come_from() -> None:
    """The test's notion of a domain is the registry's: every registered spec comes from one."""
    assert {"sync_pipelines.defs.rt", "sync_pipelines.defs.students"} <= DOMAINS
    for spec in SYNCS:
        assert _in_domain(type(spec.resources).__module__), spec.system


@pytest.mark.unit
def test_only_the_registry_imports_the_domains() -> None:
    imports = _imports()
    importers = {
        module
        for module, targets in imports.items()
        if not _in_domain(module) and any(map(_in_domain, targets))
    }
    assert importers == {REGISTRY}


@pytest.mark.unit
@pytest.mark.parametrize(
    "module",
    [
        "sync_pipelines.defs.shared.sync_builder",
        "sync_pipelines.defs.shared.sync_spec",
        "sync_pipelines.defs.systems",
        "sync_pipelines.defs.code_location",
        "sync_pipelines.defs.operations.definitions",
    ],
)
def test_the_builder_and_the_system_lists_load_no_domain(module: str) -> None:
    """Not even through another module: the chain builder -> systems -> registry -> every domain is gone."""
    imports = _imports()
    assert sorted(filter(_in_domain, _reached(module, imports))) == []
    assert REGISTRY not in _reached(module, imports)


@pytest.mark.unit
def test_two_syncs_of_one_system_are_refused() -> None:
    with pytest.raises(ValueError, match="two registered syncs have the system 'rt'"):
        code_location((*SYNCS, SYNCS[0]))
