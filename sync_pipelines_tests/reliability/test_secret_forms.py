"""Defect 6: database passwords in every form SQLAlchemy and libpq accept reach no output: a ``?password=`` query
(a URL that connects), an unencoded ``@`` in the password, a key=value DSN, ``PGPASSWORD`` in the environment.
A sync runs with them, succeeds and fails; the event log (through the instance), the CLI's stdout and stderr,
the audit rows and the alert's payload are searched for every password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.sandbox.portaildf import DEFAULT_PASSWORD
from devkit.sandbox.server import free_port
from sync_pipelines.definitions import defs
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness.alerts import AlertReceiver, alert_on_failed_run
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.reliability.conftest import leaked, recorded_texts
from sync_pipelines_tests.reliability.test_user_kinds_reliability import TARGET, job, kinds_world

pytestmark = pytest.mark.e2e

QUERY_SECRET = "zlv-query-pw-7c1e93"
AT_SECRET = "st@te-pw-@-5a0b2e"
KEY_VALUE_SECRET = "kv-pw-d41f08"
PG_SECRET = "pgpassword-env-9b3c77"
SECRETS = [QUERY_SECRET, AT_SECRET, KEY_VALUE_SECRET, PG_SECRET, "te-pw-@-5a0b2e", "5a0b2e"]


def with_query_password(url: str, password: str) -> str:
    return f"{url}?password={password}"


def with_raw_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def test_passwords_in_every_url_form_appear_nowhere(
    make_pg_url, dagster_home: Path, alert_receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    zlv_url, state_url = make_pg_url(), make_pg_url()
    unreachable = f"host=127.0.0.1 port={free_port()} dbname=gone user=postgres password={KEY_VALUE_SECRET}"
    with kinds_world(zlv_url) as world:
        runner = job(
            dagster_home,
            world,
            with_query_password(zlv_url, QUERY_SECRET),
            with_raw_password(state_url, AT_SECRET),
            DEFAULT_PASSWORD,
        )
        runner.env["PGPASSWORD"] = PG_SECRET
        ok = runner.run({"limit": 20})
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
        runner.env["ZLV_DATABASE_URL"] = unreachable
        failed = runner.run()
        assert failed.returncode != 0
        assert "ZLV_DATABASE_URL" in failed.stdout + failed.stderr

        # The same failure in-process, with the failure alert POSTed to a receiver.
        for name, value in {**runner.env, "SYNC_ALERT_WEBHOOK_URL": alert_receiver.url}.items():
            monkeypatch.setenv(name, value)
        with instance_with_events_in_memory() as instance:
            result = defs.resolve_job_def("user_kind_sync").execute_in_process(
                instance=instance, raise_on_error=False
            )
            assert not result.success
            alert_on_failed_run(instance, result)
            event_log = [
                text
                for entry in instance.all_logs(result.run_id)
                for text in (entry.user_message or "", repr(entry.dagster_event))
            ]
    assert len(alert_receiver.received) == 1
    assert "ZLV_DATABASE_URL" in alert_receiver.received[0]["error"]
    audit = SyncStateStore.from_url(with_raw_password(state_url, AT_SECRET)).audit.rows(TARGET)
    assert audit  # the successful run wrote and audited
    texts = [ok.stdout, ok.stderr, failed.stdout, failed.stderr, *recorded_texts(dagster_home), *event_log]
    texts += [json.dumps(audit, default=str), json.dumps(alert_receiver.received, ensure_ascii=False)]
    assert leaked(SECRETS, texts) == []
