"""Defect 4: a killed run's committed change for a student the next run cannot read (their token revoked) stays in
flight for a run that can read them; it is never audited ``not_applied``."""

from __future__ import annotations

import pytest

from devkit.sandbox.bakalari import BakalariSandbox, generate_school
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
from sync_pipelines.sync.state import NOT_APPLIED, SyncStateStore
from sync_pipelines_tests.bakalari.helpers import engine_for, failure_message, rows, run_sync, sync_resources

pytestmark = pytest.mark.integration

TARGET = "bakalari_entities"


def test_a_change_for_a_student_not_read_stays_in_flight(make_pg_url) -> None:
    school = generate_school(8, 4)
    edurpg_url, state_url = make_pg_url(), make_pg_url()
    seed_edurpg(edurpg_url, school)
    student = school.students[0].user_id
    with ThreadedSandbox(BakalariSandbox(school)) as handle:
        resources = sync_resources(handle.url, edurpg_url, state_url)
        first = run_sync(resources)
        assert first.success, failure_message(first)
        # A run killed after EduRPG committed the student's new name, before its audit: the batch stays ahead.
        name = rows(engine_for(edurpg_url), "User", f"WHERE \"bakalariId\" = '{student}'")[0]["name"]
        key = f"User:{student}"
        state = SyncStateStore.from_url(state_url)
        state.write_ahead.begin(
            "killed",
            TARGET,
            [PlannedRecord(key, Action.UPDATE, {"name": name}, (FieldChange("name", "x", name),))],
        )
        # Then the student's token is revoked: the next run cannot read their account.
        handle.change_state({"action": "revoke_refresh_token", "user_id": student})
        run_sync(resources)
        assert key in state.settlement.pending(TARGET)  # left for a run that can read it
        assert [row for row in state.audit.rows(TARGET) if row["status"] == NOT_APPLIED] == []
