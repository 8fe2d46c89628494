"""The shipped example run configs: each is valid config for the job its comment names, and a dry run."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from sync_pipelines.definitions import defs
from sync_pipelines.defs.syncs import SYNCS

pytestmark = pytest.mark.integration

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def example_job(path: Path) -> str:
    """The job an example's comment runs it with (``-j <job> -c examples/<file>``)."""
    found = re.search(r"-j (\w+) -c examples/" + re.escape(path.name), path.read_text())
    assert found is not None, f"{path.name} names no job"
    return found.group(1)


def test_there_is_a_dry_run_example_per_sync() -> None:
    assert sorted(example_job(path) for path in EXAMPLES) == sorted(spec.job for spec in SYNCS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_is_valid_config_for_its_job(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in SYNCS:
        for name in spec.required_variables:
            monkeypatch.setenv(name, "set")  # resources resolve their variables while config is validated
    job = example_job(path)
    config = yaml.safe_load(path.read_text())
    dg.validate_run_config(defs.resolve_job_def(job), config)
    [asset_config] = [op["config"] for op in config["ops"].values()]
    assert asset_config["dry_run"] is True
