"""Every job an operator can launch says what it does on its page and in the launchpad."""

from __future__ import annotations

import pytest

from sync_pipelines.definitions import defs


@pytest.mark.unit
def test_every_job_is_described() -> None:
    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name for job in jobs} >= {"prune_run_history", "sync_checks"}
    assert [job.name for job in jobs if not (job.description or "").strip()] == []


@pytest.mark.unit
def test_an_undo_jobs_launchpad_lists_only_its_own_systems_resources() -> None:
    """An undo job carries its resources itself: its launchpad offers its own system's settings and the state
    store, not every system's of the code location."""
    undo_jobs = [job for job in defs.resolve_all_job_defs() if job.name.endswith("_undo")]
    assert {job.name for job in undo_jobs} == {
        "rt_user_sync_undo",
        "bakalari_sync_undo",
        "user_kind_sync_undo",
    }
    own = {
        "rt_user_sync_undo": {"request_tracker"},
        "bakalari_sync_undo": {"bakalari", "edurpg_database"},
        "user_kind_sync_undo": {"portaildf", "zlv_database"},
    }
    for job in undo_jobs:
        assert set(job.resource_defs) == own[job.name] | {"sync_state", "io_manager"}, job.name
