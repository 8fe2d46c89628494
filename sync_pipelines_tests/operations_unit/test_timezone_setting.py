"""A misspelled ``SYNC_TIMEZONE`` does not stop the code location's load: the schedules run in UTC while the
config check reports it in one line naming ``SYNC_TIMEZONE``, not as an invalid timezone of a schedule."""

from __future__ import annotations

import os

import pytest

from sync_pipelines_tests.harness import warm_python

pytestmark = pytest.mark.integration

SHOW = (
    "from sync_pipelines.definitions import defs\n"
    "print(sorted({s.execution_timezone for s in defs.get_repository_def().schedule_defs}))"
)


def test_a_misspelled_timezone_is_reported_naming_it_and_the_schedules_run_in_utc() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RT_", "BAKALARI_", "EDURPG_", "PORTAILDF_", "ZLV_", "SYNC_"))
    }
    env["SYNC_TIMEZONE"] = "Europe/Pragu"
    loaded = warm_python.run(["-c", SHOW], env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "['UTC']"
    checked = warm_python.run(["-m", "sync_pipelines.config_check"], env=env)
    assert checked.returncode == 1
    assert checked.stdout.splitlines() == [
        "SYNC_TIMEZONE: 'Europe/Pragu' is not a timezone name; use an IANA name such as UTC or Europe/Prague; "
        "the schedules run in UTC"
    ]
