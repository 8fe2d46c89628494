"""Record history of ``user_kinds``: a user whose kind was never written says why (not found, several records,
a row error), a written one shows its change and its undo command, and a user asked about by e-mail is named by
id only, the e-mail kept nowhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.portaildf import DEFAULT_PASSWORD, DEFAULT_USERNAME
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.operations.record_history import ask_about, record_history_job
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.sync.record_history import RecordHistory
from sync_pipelines.sync.state import default_state_url
from sync_pipelines_tests.user_kinds.conftest import ZlvWorld, make_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZlvWorld]:
    """The world, with the sync's variables set as a deployment's are (record history reads them)."""
    for world in make_world(pg_url, "v2"):
        for name, value in {
            "PORTAILDF_API_URL": f"{world.handle.url}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
            "PORTAILDF_AUTH_VERSION": "v2",
            "ZLV_DATABASE_URL": world.zlv_url,
        }.items():
            monkeypatch.setenv(name, value)
        yield world


def history(record: str) -> RecordHistory:
    return ask_about(SYNCS, "user_kinds", record, logging.getLogger("test"), SyncStateResource())


def now_row(answer: RecordHistory, key: str) -> Any:
    [row] = [row for row in answer.fields if row.key == key and row.field == "kind"]
    return row


def test_a_kind_never_written_says_why(world: ZlvWorld) -> None:
    cases = world.sample.cases
    not_found, several = cases["not_found"][0], cases["duplicate"][0]
    broken = next(user for user in world.sample.users if user.id in cases["stale"] and user.email)
    world.handle.change_state({"action": "set_record_fields", "email": broken.email, "drop": ["exterieur"]})
    # The others are written; whether a row error fails the run is the run's failure policy, not history's.
    first, second = world.run(), world.run()

    answer = history(not_found)
    assert [event.run_id for event in answer.events] == [first.run_id, second.run_id]
    assert {(event.status, event.category) for event in answer.events} == {("skipped", "not_found")}
    table = answer.events_table()
    assert "2 runs:" in table and "skipped (not_found): no Portail DF account has this email" in table
    row = now_row(answer, not_found)
    assert row.held == world.sample.user(not_found).kind and row.wanted is None
    assert row.why.startswith("skipped: not_found: no Portail DF account has this email")
    assert answer.last_change is None and "Nothing to undo" in answer.markdown()

    answer = history(several)
    # Several records for one e-mail whose flags disagree: the kind is left alone, ``structures_disagree``.
    assert {event.category for event in answer.events} == {"structures_disagree"}
    assert now_row(answer, several).why.startswith("skipped: structures_disagree: ")

    answer = history(broken.id)
    assert {event.status for event in answer.events} == {"row_error"}
    assert "row error (invalid_answer): unusable in Portail DF's answer: record" in answer.events_table()
    why = now_row(answer, broken.id).why
    assert why.startswith(
        "row error: the source's answer cannot be used now: unusable in Portail DF's answer"
    )
    assert "'exterieur' is missing" in why


def test_a_written_kind_shows_its_change_and_the_undo_command_and_an_email_is_never_kept(
    world: ZlvWorld,
) -> None:
    changed = next(
        user
        for user in world.sample.users
        if user.id in world.sample.changes() and user.email and "@" in user.email
    )
    dry = world.run({"dry_run": True})
    written = world.run()
    assert dry.success and written.success
    new = world.sample.changes()[changed.id]

    answer = history(changed.email.upper())  # as support staff type it
    assert answer.subject.keys == (changed.id,)
    assert [(event.run_id, event.kind, event.status) for event in answer.events] == [
        (dry.run_id, "dry run", "planned"),
        (written.run_id, "sync", "applied"),
    ]
    assert f"{changed.kind or '∅'} -> {new}" in answer.events_table()
    assert now_row(answer, changed.id).why == "in step"
    assert answer.last_change is not None and answer.last_change.run_id == written.run_id
    assert answer.undo_command is not None
    assert f'"run_id": "{written.run_id}", "dry_run": false' in answer.undo_command
    assert "-j user_kind_sync_undo" in answer.undo_command

    # The record_history job shows the same answer as its step's metadata, each run a link to its page.
    result = record_history_job(SYNCS).execute_in_process(
        run_config={"ops": {"record_lookup": {"config": {"system": "user_kinds", "record": changed.email}}}},
        raise_on_error=False,
    )
    assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_failure]
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}  # type: ignore[union-attr]
    assert metadata["record"] == f"ZLV user {changed.id}"
    assert f"[{written.run_id[:8]}](/runs/{written.run_id})" in metadata["history"]
    assert metadata["last_change_run"] == written.run_id
    assert f'"run_id": "{written.run_id}"' in metadata["undo_last_change"]
    shown = " ".join(str(value) for value in metadata.values())
    for event in result.all_events:
        shown += f" {event.message or ''}"
    assert changed.email.lower() not in shown.lower()

    # The state database keeps ids, never the e-mail.
    engine = create_database_engine(default_state_url(), "SYNC_STATE_DATABASE_URL")
    with engine.connect() as connection:
        for table in ("sync_runs", "sync_record_outcomes", "sync_audit"):
            rows = connection.execute(sa.text(f"SELECT * FROM {table}")).all()
            assert rows and changed.email.lower() not in repr(rows).lower(), table


def test_an_email_no_user_has_is_one_line_without_the_email(world: ZlvWorld) -> None:
    result = record_history_job(SYNCS).execute_in_process(
        run_config={
            "ops": {"record_lookup": {"config": {"system": "user_kinds", "record": "Nobody@Nowhere.example"}}}
        },
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message  # type: ignore[union-attr]
    assert "no ZLV user has the e-mail asked about" in message
    assert "nowhere.example" not in message.lower()
    assert isinstance(result, dg.ExecuteInProcessResult)
