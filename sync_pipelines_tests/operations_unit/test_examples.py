"""The shipped example run configs: each is valid config for the job its comment names, and a dry run."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_pipelines.definitions import defs
from sync_pipelines.defs.systems import REQUIRED_VARIABLES

pytestmark = pytest.mark.integration

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_is_a_dry_run_example_per_sync() -> None:
    assert [path.name for path in EXAMPLES] == [
        "dry-run-bakalari.yaml",
        "dry-run-rt.yaml",
        "dry-run-user-kinds.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_is_valid_config_for_its_job(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for names in REQUIRED_VARIABLES.values():
        for name in names:
            monkeypatch.setenv(name, "set")  # resources resolve their variables while config is validated
    text = path.read_text()
    job = re.search(r"-j (\w+) -c examples/" + re.escape(path.name), text).group(1)  # type: ignore[union-attr]
    config = yaml.safe_load(text)
    dg.validate_run_config(defs.resolve_job_def(job), config)
    [asset_config] = [op["config"] for op in config["ops"].values()]
    assert asset_config["dry_run"] is True
