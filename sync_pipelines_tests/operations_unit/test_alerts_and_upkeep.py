"""The failure alert (against a real local webhook receiver) and run history upkeep."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.operations.run_history import prune_run_history, prune_runs
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness.alerts import AlertReceiver, alert_on_failed_run
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory

pytestmark = pytest.mark.integration

SECRET = "rt-token-5b1e-do-not-leak"


@dg.op
def leaky_step() -> None:
    raise RuntimeError(f"RT said no while using token {SECRET}")


@dg.job(name="rt_user_sync")
def failing_job() -> None:
    leaky_step()


@pytest.fixture
def receiver():
    server = AlertReceiver()
    yield server
    server.close()


def test_failed_run_posts_an_alert_without_secrets(
    receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("RT_TOKEN", SECRET)
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "https://dagster.school.example")
    with instance_with_events_in_memory() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        alert_on_failed_run(instance, result)
    assert len(receiver.received) == 1
    payload = receiver.received[0]
    assert payload["job"] == "rt_user_sync"
    assert payload["run_id"] == result.run_id
    assert payload["run_url"] == f"https://dagster.school.example/runs/{result.run_id}"
    assert "RT said no while using token ***" in payload["error"]
    assert SECRET not in json.dumps(payload)


def test_no_webhook_only_logs(receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNC_ALERT_WEBHOOK_URL", raising=False)
    with instance_with_events_in_memory() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        alert_on_failed_run(instance, result)
    assert receiver.received == []


@dg.op
def noop() -> None:
    pass


@dg.job
def small_job() -> None:
    noop()


def test_prune_deletes_only_old_finished_runs() -> None:
    with instance_with_events_in_memory() as instance:
        old = [small_job.execute_in_process(instance=instance).run_id for _ in range(3)]
        time.sleep(0.05)
        cutoff = datetime.now(timezone.utc)
        time.sleep(0.05)
        recent = small_job.execute_in_process(instance=instance).run_id
        assert prune_runs(instance, cutoff, dry_run=True) == 3
        assert len(instance.get_run_ids()) == 4
        assert prune_runs(instance, cutoff) == 3
        assert instance.get_run_ids() == [recent]
        assert all(instance.get_run_by_id(run_id) is None for run_id in old)
        assert instance.all_logs(old[0]) == []


def test_prune_job_uses_the_retention_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_RUN_RETENTION_DAYS", "30")
    with instance_with_events_in_memory() as instance:
        small_job.execute_in_process(instance=instance)
        result = prune_run_history.execute_in_process(instance=instance)
        assert result.output_for_node("prune_old_runs") == 0
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert any("(30 days)" in line for line in logs)
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert prune_runs(instance, future) == 2


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("SYNC_RUN_RETENTION_DAYS", "0", "SYNC_RUN_RETENTION_DAYS: must be at least 1 day, got '0'"),
        (
            "SYNC_RUN_RETENTION_DAYS",
            "ninety",
            "SYNC_RUN_RETENTION_DAYS: must be a whole number of days, got 'ninety'",
        ),
        (
            "SYNC_AUDIT_RETENTION_DAYS",
            "nan",
            "SYNC_AUDIT_RETENTION_DAYS: must be a whole number of days, got 'nan'",
        ),
    ],
)
def test_a_wrong_retention_fails_the_prune_in_one_line_and_deletes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path, name: str, value: str, line: str
) -> None:
    """Not taken as the default (which would delete what a longer retention keeps): the prune fails naming it."""
    monkeypatch.setenv("SYNC_STATE_DATABASE_URL", f"sqlite:///{tmp_path / 's.sqlite'}")
    monkeypatch.setenv(name, value)
    with instance_with_events_in_memory() as instance:
        small_job.execute_in_process(instance=instance)
        result = prune_run_history.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        [failure] = [event for event in result.all_events if event.is_step_failure]
        assert (
            failure.step_failure_data.error.message.strip()
            == f"dagster._core.definitions.events.Failure: {line}"
        )
        assert len(instance.get_run_ids()) == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_prune_deletes_state_rows_older_than_their_retention(
    backend: str, tmp_path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit rows, record history (runs and outcomes, with the audit's retention), saved plans and stale
    write-ahead rows, dated, each against its own setting; a plan is kept at least as long as it may be applied."""
    from sync_pipelines.sync.outcome_store import RecordOutcome, RunRecord
    from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord
    from sync_pipelines.sync.state import audit_log, batches_in_flight, saved_plans
    from sync_pipelines.sync.state_schema import SKIPPED, record_outcomes, runs

    url = (
        request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 's.sqlite'}"
    )
    monkeypatch.setenv("SYNC_STATE_DATABASE_URL", url)
    monkeypatch.setenv("SYNC_AUDIT_RETENTION_DAYS", "100")
    monkeypatch.setenv("SYNC_PLAN_RETENTION_DAYS", "1")
    monkeypatch.setenv("SYNC_PLAN_MAX_AGE_HOURS", "72")  # plans stay 3 days, not 1
    monkeypatch.setenv("SYNC_WRITE_AHEAD_RETENTION_DAYS", "10")
    store = SyncStateStore.from_url(url)
    record = PlannedRecord(
        "User:1", Action.UPDATE, {"name": "Nova Name"}, (FieldChange("name", "Old", "Nova"),)
    )
    now = datetime.now(timezone.utc)
    for age_days in (5, 150):
        run_id = f"run-{age_days}"
        batch = store.write_ahead.begin(run_id, "t", [record])
        store.write_ahead.finish(run_id, "t", [record], {}, False, batch)
        store.plans.save(run_id, "t", [record], {"update": 1})
        store.write_ahead.begin(run_id, "t", [record])  # left in flight by a killed run
        store.history.record_run(
            RunRecord(run_id, "t", False), [RecordOutcome("User:2", SKIPPED, "malformed", reason="x")]
        )
        with store.engine.begin() as connection:
            moment = now - timedelta(days=age_days)
            for table in (runs, record_outcomes):
                connection.execute(
                    sa.update(table).where(table.c.run_id == run_id).values(recorded_at=moment)
                )
            connection.execute(
                sa.update(audit_log).where(audit_log.c.run_id == run_id).values(recorded_at=moment)
            )
            connection.execute(
                sa.update(saved_plans).where(saved_plans.c.plan_id == run_id).values(created_at=moment)
            )
            connection.execute(
                sa.update(batches_in_flight)
                .where(batches_in_flight.c.run_id == run_id)
                .values(started_at=moment)
            )
    store.plans.save("run-2", "t", [record], {"update": 1})
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(saved_plans)
            .where(saved_plans.c.plan_id == "run-2")
            .values(created_at=now - timedelta(days=2))
        )
    with instance_with_events_in_memory() as instance:
        preview = prune_run_history.execute_in_process(
            instance=instance, run_config={"ops": {"prune_sync_state": {"config": {"dry_run": True}}}}
        )
        counts = {"audit": 1, "outcomes": 1, "runs": 1, "plans": 2, "write_ahead": 1}
        assert preview.output_for_node("prune_sync_state") == counts
        assert len(store.audit.rows("t")) == 2
        result = prune_run_history.execute_in_process(instance=instance)
    assert result.output_for_node("prune_sync_state") == counts
    assert [row.run_id for row in store.history.rows("t", ["User:1", "User:2"]) if row.kept == "outcome"] == [
        "run-5"
    ]
    assert set(store.history.runs(["run-5", "run-150"])) == {"run-5"}
    assert {row["run_id"] for row in store.audit.rows("t")} == {"run-5"}
    assert store.plans.load("run-5") is None and store.plans.load("run-150") is None
    assert store.plans.load("run-2") is not None
    with store.engine.connect() as connection:
        assert [r.run_id for r in connection.execute(sa.select(batches_in_flight.c.run_id))] == ["run-5"]
