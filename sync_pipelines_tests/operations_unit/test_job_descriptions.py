"""Every job an operator can launch says what it does on its page and in the launchpad."""

from __future__ import annotations

import pytest

from sync_pipelines.definitions import defs
from sync_pipelines.defs.syncs import SYNCS


@pytest.mark.unit
def test_every_job_is_described() -> None:
    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name for job in jobs} >= {"prune_run_history", "sync_checks"}
    assert [job.name for job in jobs if not (job.description or "").strip()] == []


@pytest.mark.unit
def test_an_undo_jobs_launchpad_lists_only_its_own_systems_resources() -> None:
    """An undo job carries its resources itself: its launchpad offers its own system's settings (its spec's
    resources) and the state store, not every system's of the code location."""
    undo_jobs = {job.name: job for job in defs.resolve_all_job_defs() if job.name.endswith("_undo")}
    assert set(undo_jobs) == {spec.undo_job for spec in SYNCS}
    for spec in SYNCS:
        own = set(spec.resources.resource_keys())
        assert set(undo_jobs[spec.undo_job].resource_defs) == own | {"sync_state", "io_manager"}, (
            spec.undo_job
        )
    assert set(undo_jobs["rt_user_sync_undo"].resource_defs) == {
        "request_tracker",
        "sync_state",
        "io_manager",
    }
