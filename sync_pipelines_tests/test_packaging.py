"""The product package ships the code location only: no stand-in, demo or harness, and no import of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import setuptools
import tomllib

from sync_pipelines_tests.harness.python_source import parse_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "sync_pipelines"
DEVELOPMENT_PACKAGES = ("devkit", "sync_pipelines_tests", "bench")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(parse_file(path)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def test_the_product_never_imports_a_development_package() -> None:
    sources = sorted(PRODUCT.rglob("*.py"))
    assert len(sources) > 10
    offending = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sources
        for name in imported_modules(path)
        if name.split(".")[0] in DEVELOPMENT_PACKAGES
    ]
    assert offending == []


def test_the_product_names_no_development_module_in_strings() -> None:
    """``python -m devkit.sandbox`` in a command line is a dependency too, even without an import."""
    offending = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for node in ast.walk(parse_file(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in (
                    "devkit",
                    "sync_pipelines_tests",
                    "sync_pipelines.sandbox",
                    "sync_pipelines.demo",
                ):
                    if name in node.value:
                        offending.append(f"{path.relative_to(REPO)}:{node.lineno} names {name}")
    assert offending == []


def test_the_distribution_holds_only_the_code_location() -> None:
    """The packages ``pip install .`` ships, found as pyproject.toml's [tool.setuptools.packages.find] does."""
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(
        where=str(REPO), include=find["include"], exclude=find.get("exclude", ())
    )
    assert "sync_pipelines" in packages and "sync_pipelines.defs" in packages
    parts = {part for package in packages for part in package.split(".")}
    assert not parts & {"sandbox", "demo", "devkit", "sync_pipelines_tests", "bench"}, packages
    assert not list(PRODUCT.rglob("demo.py")) and not list(PRODUCT.rglob("sandbox"))
