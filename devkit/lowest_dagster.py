"""The lowest Dagster releases pyproject.toml allows: each ``dagster*`` requirement's lower bound, pinned.

``./dev setup`` installs them with the project in a second virtual environment (``LOWEST_VENV``), where the
"existing Dagster" test (sync_pipelines_tests/deploy/test_existing_dagster.py) runs too, so that the lower end of
the declared range is tested and not only the lock's versions. ``python -m devkit.lowest_dagster venv`` prints
that environment's directory, ``python -m devkit.lowest_dagster pins`` the requirements to install in it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOWEST_VENV = REPO / ".venv-dagster-lowest"


def lowest_dagster_pins(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """``{distribution: version}`` for every ``dagster*`` install requirement, at its ``>=`` bound."""
    pins: dict[str, str] = {}
    for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        if not requirement.name.startswith("dagster"):
            continue
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise ValueError(f"{pyproject}: {line!r} needs one '>=' lower bound (the lowest release tested)")
        pins[requirement.name] = lower[0]
    return pins


if __name__ == "__main__":
    if sys.argv[1:] == ["venv"]:
        print(LOWEST_VENV.relative_to(REPO))
    elif sys.argv[1:] == ["pins"]:
        print(" ".join(f"{name}=={version}" for name, version in lowest_dagster_pins().items()))
    else:
        sys.exit("usage: python -m devkit.lowest_dagster venv|pins")
