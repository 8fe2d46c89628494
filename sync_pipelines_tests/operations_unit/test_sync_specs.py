"""Each sync declared once: the registered specs give SYNC_SYSTEMS and sync_checks their lists, and each sync's
schedule is set without code (``<JOB>_CRON``: a cron expression, or ``off``), a bad cron reported in one line and
that schedule left out, the code location still loading."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from sync_pipelines.defs.operations.checks_job import CHECKED_ASSETS
from sync_pipelines.defs.shared.sync_builder import build_sync, sync_job_of, sync_schedule_of
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import REQUIRED_VARIABLES, system_problems

SPECS = {spec.system: spec for spec in SYNCS}
DEFAULT_SCHEDULES = {
    "rt": ("rt_user_sync_daily", "RT_USER_SYNC_CRON", "0 1 * * *"),
    "bakalari": ("bakalari_sync_every_15_minutes", "BAKALARI_SYNC_CRON", "*/15 * * * *"),
    "user_kinds": ("user_kind_sync_daily", "USER_KIND_SYNC_CRON", "0 3 * * *"),
}


def schedule(system: str) -> dg.ScheduleDefinition:
    spec = SPECS[system]
    return sync_schedule_of(spec, sync_job_of(spec))


@pytest.fixture(autouse=True)
def no_schedule_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for _, variable, _ in DEFAULT_SCHEDULES.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("SYNC_SYSTEMS", raising=False)


@pytest.mark.unit
def test_the_system_lists_derive_from_the_registered_specs() -> None:
    assert list(REQUIRED_VARIABLES) == ["rt", "bakalari", "user_kinds"]
    assert REQUIRED_VARIABLES["rt"] == ("STUDENTS_DATABASE_URL", "RT_URL", "RT_TOKEN")
    # RT's checks watch the students snapshot too, so sync_checks runs the students' checks with RT's.
    assert CHECKED_ASSETS == {
        "rt": ("rt_user_custom_fields", "students"),
        "bakalari": ("bakalari_entities",),
        "user_kinds": ("user_kinds",),
    }


@pytest.mark.unit
@pytest.mark.parametrize("system", sorted(DEFAULT_SCHEDULES))
def test_schedules_keep_their_names_and_default_crons(system: str) -> None:
    name, variable, cron = DEFAULT_SCHEDULES[system]
    assert SPECS[system].cron_variable == variable
    built = schedule(system)
    assert (built.name, built.cron_schedule, built.job_name) == (name, cron, SPECS[system].job)


@pytest.mark.unit
def test_a_cron_variable_replaces_the_schedule_without_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKALARI_SYNC_CRON", " 0,15,30,45 7-17 * * 1-5 ")  # school hours
    assert schedule("bakalari").cron_schedule == "0,15,30,45 7-17 * * 1-5"
    assert "BAKALARI_SYNC_CRON" in (schedule("bakalari").description or "")
    assert schedule("rt").cron_schedule == "0 1 * * *"  # the other syncs keep theirs


@pytest.mark.unit
def test_off_defines_the_schedule_stopped_even_for_an_enabled_system(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REQUIRED_VARIABLES["user_kinds"]:
        monkeypatch.setenv(name, "set")
    assert schedule("user_kinds").default_status == dg.DefaultScheduleStatus.RUNNING
    monkeypatch.setenv("USER_KIND_SYNC_CRON", "OFF")
    stopped = schedule("user_kinds")
    assert stopped.default_status == dg.DefaultScheduleStatus.STOPPED
    assert stopped.cron_schedule == "0 3 * * *"


@pytest.mark.unit
@pytest.mark.parametrize("cron", ["every night", "0 1 * *", "61 1 * * *", "0 1 30 2 *"])
def test_a_bad_cron_is_reported_in_one_line_naming_the_variable(
    cron: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RT_USER_SYNC_CRON", cron)
    built = build_sync(SPECS["rt"])
    assert built.schedule is None
    assert built.job.name == "rt_user_sync"
    [problem] = system_problems(SPECS["rt"], {})
    message = str(problem)
    assert message.startswith(f"RT_USER_SYNC_CRON: {cron!r} is not a cron expression of 5 fields")
    assert message.endswith("the schedule rt_user_sync_daily is left out")
    assert "\n" not in message
    assert not problem.stops_runs


@pytest.mark.integration
def test_a_bad_cron_leaves_its_schedule_out_and_the_code_location_loads() -> None:
    show = (
        "from sync_pipelines.definitions import defs\n"
        "print(sorted(s.name for s in defs.get_repository_def().schedule_defs))"
    )
    env = {**os.environ, "USER_KIND_SYNC_CRON": "daily at 3"}
    loaded = subprocess.run(
        [sys.executable, "-c", show], env=env, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == [
        "['bakalari_sync_every_15_minutes',",
        "'prune_run_history_weekly',",
        "'rt_user_sync_daily']",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "sync_pipelines.config_check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1
    assert "USER_KIND_SYNC_CRON: 'daily at 3' is not a cron expression of 5 fields" in checked.stdout


@pytest.mark.integration
def test_the_code_location_loads_the_schedule_the_variables_set() -> None:
    """As the daemon loads it: the school-hours cron for Bakaláři, RT's schedule off, the third one untouched."""
    show = (
        "from sync_pipelines.definitions import defs\n"
        "for s in defs.get_repository_def().schedule_defs: print(s.name, s.default_status.value, s.cron_schedule)"
    )
    env = {
        **{name: value for name, value in os.environ.items() if not name.endswith("_SYNC_CRON")},
        "BAKALARI_SYNC_CRON": "0,15,30,45 7-17 * * 1-5",
        "RT_USER_SYNC_CRON": "off",
        "SYNC_SYSTEMS": "",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", show], env=env, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    schedules = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in loaded.stdout.strip().splitlines()}
    assert schedules["bakalari_sync_every_15_minutes"].endswith(" 0,15,30,45 7-17 * * 1-5")
    assert schedules["rt_user_sync_daily"] == "STOPPED 0 1 * * *"
    assert schedules["user_kind_sync_daily"].endswith(" 0 3 * * *")


# Each sync job's own resources: its system's, the state store, and the IO managers of the assets it runs.
OWN_RESOURCES = {
    "rt_user_sync": {
        "request_tracker",
        "students_database",
        "state_table_io_manager",
        "sync_state",
        "io_manager",
    },
    "bakalari_sync": {"bakalari", "edurpg_database", "sync_state", "io_manager"},
    "user_kind_sync": {"portaildf", "zlv_database", "sync_state", "io_manager"},
}


@pytest.mark.unit
@pytest.mark.parametrize("job", sorted(OWN_RESOURCES))
def test_a_sync_jobs_launchpad_lists_only_its_own_resources(job: str) -> None:
    from sync_pipelines.definitions import defs

    resolved = defs.resolve_job_def(job)
    assert set(resolved.resource_defs) == OWN_RESOURCES[job]
    # The launchpad's config editor offers what the job's config schema holds.
    schema = resolved.run_config_schema.config_type.fields["resources"].config_type.fields
    assert set(schema) == OWN_RESOURCES[job]
    # sync_checks checks every system: it keeps them all.
    assert set(defs.resolve_job_def("sync_checks").resource_defs) >= set().union(*OWN_RESOURCES.values())
