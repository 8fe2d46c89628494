"""The failure alert (against a real local webhook receiver) and run history upkeep."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from sync_pipelines.defs.operations.run_history import prune_run_history, prune_runs
from sync_pipelines_tests.harness.alerts import AlertReceiver, alert_on_failed_run

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
    with dg.instance_for_test() as instance:
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
    with dg.instance_for_test() as instance:
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
    with dg.instance_for_test() as instance:
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
    with dg.instance_for_test() as instance:
        small_job.execute_in_process(instance=instance)
        result = prune_run_history.execute_in_process(instance=instance)
        assert result.output_for_node("prune_old_runs") == 0
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert any("(30 days)" in line for line in logs)
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert prune_runs(instance, future) == 2
