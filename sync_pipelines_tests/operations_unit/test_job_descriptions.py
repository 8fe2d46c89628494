"""Every job an operator can launch says what it does on its page and in the launchpad."""

from __future__ import annotations

import pytest

from sync_pipelines.definitions import defs


@pytest.mark.unit
def test_every_job_is_described() -> None:
    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name for job in jobs} >= {"prune_run_history", "sync_checks"}
    assert [job.name for job in jobs if not (job.description or "").strip()] == []
