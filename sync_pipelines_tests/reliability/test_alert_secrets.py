"""A failed run of each sync job, with distinctive secrets in the environment: the alert ``sync_failure_alert``
POSTs names what to fix and holds none of them (nor does the run's event log)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from devkit.sandbox.bakalari import OPERATOR_USERNAME, BakalariSandbox, generate_school
from devkit.sandbox.databases import seed_students
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.portaildf import DEFAULT_USERNAME, PortailDfSandbox
from devkit.sandbox.rt import RequestTrackerSandbox
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import ThreadedSandbox, free_port
from devkit.sandbox.zlv import seed_zlv
from sync_pipelines.definitions import defs
from sync_pipelines_tests.harness.alerts import AlertReceiver, alert_on_failed_run
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.reliability.conftest import leaked, with_password

pytestmark = pytest.mark.integration

RT_TOKEN = "rt-token-3f9b27c4d1e8"
BAKALARI_PASSWORD = "bakalari-pw-61e0a9d2b4"
PORTAILDF_PASSWORD = "portaildf-pw-0c7d58b3aa"
DATABASE_PASSWORDS = {
    "STUDENTS_DATABASE_URL": "students-db-pw-5e21c8",
    "EDURPG_DATABASE_URL": "edurpg-db-pw-a07f33",
    "ZLV_DATABASE_URL": "zlv-db-pw-c4b9e1",
    "SYNC_STATE_DATABASE_URL": "state-db-pw-18d6f0",
}
SECRETS = [RT_TOKEN, BAKALARI_PASSWORD, PORTAILDF_PASSWORD, *DATABASE_PASSWORDS.values()]


class Systems:
    """The sandboxes and databases one job needs; ``refuse`` makes the server expect other credentials,
    ``unreachable`` points the job's database URL (password and all) at a port nobody listens on."""

    def __init__(self, make_pg_url: Callable[[], str], stack: ExitStack) -> None:
        self.make_pg_url = make_pg_url
        self.stack = stack

    def database(self, variable: str, unreachable: bool, seed: Callable[[str], Any]) -> str:
        password = DATABASE_PASSWORDS[variable]
        if unreachable:
            return f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/gone"
        url = self.make_pg_url()
        seed(url)
        return with_password(url, password)

    def serve(self, sandbox: Any) -> str:
        return self.stack.enter_context(ThreadedSandbox(sandbox)).url

    def rt(self, refuse: bool, unreachable: bool) -> dict[str, str]:
        students = generate_students(20, seed=1)
        sandbox = RequestTrackerSandbox.from_sample(
            20, seed=1, token="the-server-wants-this" if refuse else RT_TOKEN
        )
        return {
            "RT_URL": self.serve(sandbox),
            "STUDENTS_DATABASE_URL": self.database(
                "STUDENTS_DATABASE_URL",
                unreachable,
                lambda url: seed_students(url, students, schema="legacy"),
            ),
        }

    def bakalari(self, refuse: bool, unreachable: bool) -> dict[str, str]:
        school = generate_school(12, 3)
        password = "the-server-wants-this" if refuse else BAKALARI_PASSWORD
        return {
            "BAKALARI_URL": self.serve(BakalariSandbox(school, operator_password=password)),
            "BAKALARI_USERNAME": OPERATOR_USERNAME,
            "EDURPG_DATABASE_URL": self.database(
                "EDURPG_DATABASE_URL", unreachable, lambda url: seed_edurpg(url, school)
            ),
        }

    def user_kinds(self, refuse: bool, unreachable: bool) -> dict[str, str]:
        password = "the-server-wants-this" if refuse else PORTAILDF_PASSWORD
        sandbox = PortailDfSandbox.from_sample(20, 3, password=password)
        assert sandbox.sample is not None
        users = sandbox.sample.users
        return {
            "PORTAILDF_API_URL": f"{self.serve(sandbox)}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "ZLV_DATABASE_URL": self.database(
                "ZLV_DATABASE_URL", unreachable, lambda url: seed_zlv(url, users)
            ),
        }


@pytest.fixture
def systems(make_pg_url) -> Iterator[Systems]:
    with ExitStack() as stack:
        yield Systems(make_pg_url, stack)


CASES = [
    ("rt_user_sync", "rt", "refused", "RT_TOKEN"),
    ("rt_user_sync", "rt", "unreachable", "STUDENTS_DATABASE_URL"),
    ("bakalari_sync", "bakalari", "refused", "BAKALARI_USERNAME / BAKALARI_PASSWORD"),
    ("bakalari_sync", "bakalari", "unreachable", "EDURPG_DATABASE_URL"),
    ("user_kind_sync", "user_kinds", "refused", "PORTAILDF_USERNAME / PORTAILDF_PASSWORD"),
    ("user_kind_sync", "user_kinds", "unreachable", "ZLV_DATABASE_URL"),
]


@pytest.mark.parametrize(("job", "system", "failure", "named"), CASES)
def test_failure_alert_names_the_setting_and_holds_no_secret(
    job: str,
    system: str,
    failure: str,
    named: str,
    systems: Systems,
    make_pg_url,
    alert_receiver: AlertReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = getattr(systems, system)(refuse=failure == "refused", unreachable=failure == "unreachable")
    env.update(
        {
            "RT_TOKEN": RT_TOKEN,
            "BAKALARI_PASSWORD": BAKALARI_PASSWORD,
            "PORTAILDF_PASSWORD": PORTAILDF_PASSWORD,
            "SYNC_STATE_DATABASE_URL": with_password(
                make_pg_url(), DATABASE_PASSWORDS["SYNC_STATE_DATABASE_URL"]
            ),
            "SYNC_ALERT_WEBHOOK_URL": alert_receiver.url,
        }
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with instance_with_events_in_memory() as instance:
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        alert_on_failed_run(instance, result)
        event_log = [
            text
            for entry in instance.all_logs(result.run_id)
            for text in (entry.user_message or "", repr(entry.dagster_event))
        ]

    assert len(alert_receiver.received) == 1
    payload = alert_receiver.received[0]
    assert (payload["job"], payload["run_id"]) == (job, result.run_id)
    assert named in payload["error"]
    assert leaked(SECRETS, [json.dumps(payload, ensure_ascii=False)]) == []
    assert any(named in text for text in event_log)
    assert leaked(SECRETS, event_log) == []
