"""A hung run whose worker is alive ends within a bounded time per sync: each sync job (and its undo) carries a
``dagster/max_runtime`` that the production instance's run monitoring enforces, well above the measured run
times and well below the instance-wide ``max_runtime_seconds``; ``<JOB>_MAX_RUNTIME_SECONDS`` replaces it."""

from __future__ import annotations

import pytest

from sync_pipelines.defs.shared.sync_builder import MAX_RUNTIME_TAG, build_sync, run_tags_of
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import system_problems
from sync_pipelines_tests.deploy.test_deploy_files import PRODUCTION_INSTANCE, load_yaml

# Longest sync measured (docs/benchmarks.md) is under half a minute; a limit must leave a large district room.
SHORTEST_SENSIBLE_LIMIT_SECONDS = 3600


@pytest.fixture(autouse=True)
def no_runtime_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in SYNCS:
        monkeypatch.delenv(spec.max_runtime_variable, raising=False)


@pytest.mark.unit
def test_the_production_instance_enforces_per_run_limits() -> None:
    monitoring = load_yaml(PRODUCTION_INSTANCE)["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["poll_interval_seconds"] <= 300


@pytest.mark.unit
@pytest.mark.parametrize("spec", SYNCS, ids=lambda spec: spec.job)
def test_each_sync_job_and_its_undo_carry_a_bounded_max_runtime(spec) -> None:  # noqa: ANN001
    instance_limit = load_yaml(PRODUCTION_INSTANCE)["run_monitoring"]["max_runtime_seconds"]
    built = build_sync(spec)
    for job in (built.job, built.undo_job):
        assert dict(spec.tags).items() <= dict(job.tags).items()  # the queue's tags unchanged
        seconds = int(job.tags[MAX_RUNTIME_TAG])
        assert SHORTEST_SENSIBLE_LIMIT_SECONDS <= seconds <= instance_limit / 2, job.name
        assert seconds == spec.max_runtime.total_seconds()


@pytest.mark.unit
def test_a_variable_replaces_a_syncs_max_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SYNCS[0]
    monkeypatch.setenv(spec.max_runtime_variable, "5400")
    assert run_tags_of(spec)[MAX_RUNTIME_TAG] == "5400"
    monkeypatch.setenv(spec.max_runtime_variable, "two hours")
    # A bad value keeps the spec's limit (the code location still loads) and is reported in one line.
    assert run_tags_of(spec)[MAX_RUNTIME_TAG] == str(int(spec.max_runtime.total_seconds()))
    assert [str(problem) for problem in system_problems(spec, {})] == [
        f"{spec.max_runtime_variable}: must be a whole number of seconds, got 'two hours'; "
        f"the default {int(spec.max_runtime.total_seconds())} is used"
    ]
