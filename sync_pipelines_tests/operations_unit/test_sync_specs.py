"""Each sync declared once: the registered specs give SYNC_SYSTEMS and sync_checks their lists, and each sync's
schedule is set without code (``<JOB>_CRON``: a cron expression, or ``off``), a bad cron reported in one line and
that schedule left out, the code location still loading. What is expected of every sync is read from its spec
(a sync added to the registry is tested here unchanged); the names operators script against are checked as
facts that stay true when a sync is added."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from sync_pipelines.defs.shared.sync_builder import build_sync, sync_job_of, sync_schedule_of
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.defs.systems import configuration_problems, system_problems
from sync_pipelines_tests.harness import warm_python
from sync_pipelines_tests.harness.registry import job_resources

SPECS = {spec.system: spec for spec in SYNCS}
# The interface's schedules (names and crons operators script against): true whatever else is registered.
FIXED_SCHEDULES = {
    "rt": ("rt_user_sync_daily", "RT_USER_SYNC_CRON", "0 1 * * *"),
    "bakalari": ("bakalari_sync_every_15_minutes", "BAKALARI_SYNC_CRON", "*/15 * * * *"),
    "user_kinds": ("user_kind_sync_daily", "USER_KIND_SYNC_CRON", "0 3 * * *"),
}


def schedule(system: str) -> dg.ScheduleDefinition:
    spec = SPECS[system]
    return sync_schedule_of(spec, sync_job_of(spec))


@pytest.fixture(autouse=True)
def no_schedule_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in SYNCS:
        monkeypatch.delenv(spec.cron_variable, raising=False)
    monkeypatch.delenv("SYNC_SYSTEMS", raising=False)


@pytest.mark.unit
def test_the_system_lists_derive_from_the_registered_specs() -> None:
    systems = [spec.system for spec in SYNCS]
    [unknown] = configuration_problems(SYNCS, {"SYNC_SYSTEMS": "nosuch"})[:1]
    assert str(unknown).endswith(f"the systems are {', '.join(systems)}")
    # A sync's variables are its upstream assets' and its own: RT reads the students table.
    assert SPECS["rt"].required_variables == ("STUDENTS_DATABASE_URL", "RT_URL", "RT_TOKEN")
    for spec in SYNCS:
        assert set(spec.checked_assets()) >= {spec.target, *spec.upstream_names}
    # RT's checks watch the students snapshot too, so sync_checks runs the students' checks with RT's.
    assert SPECS["rt"].checked_assets() == ("rt_user_custom_fields", "students")


@pytest.mark.unit
@pytest.mark.parametrize("spec", SYNCS, ids=lambda spec: spec.system)
def test_each_schedule_is_its_specs(spec) -> None:  # noqa: ANN001
    built = schedule(spec.system)
    assert (built.name, built.cron_schedule, built.job_name) == (
        spec.schedule.name,
        spec.schedule.default_cron,
        spec.job,
    )
    assert spec.cron_variable == f"{spec.job.upper()}_CRON"


@pytest.mark.unit
def test_the_interfaces_schedules_keep_their_names_and_default_crons() -> None:
    for system, (name, variable, cron) in FIXED_SCHEDULES.items():
        built = schedule(system)
        assert (built.name, SPECS[system].cron_variable, built.cron_schedule) == (name, variable, cron)


@pytest.mark.unit
def test_a_cron_variable_replaces_the_schedule_without_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAKALARI_SYNC_CRON", " 0,15,30,45 7-17 * * 1-5 ")  # school hours
    assert schedule("bakalari").cron_schedule == "0,15,30,45 7-17 * * 1-5"
    assert "BAKALARI_SYNC_CRON" in (schedule("bakalari").description or "")
    assert schedule("rt").cron_schedule == "0 1 * * *"  # the other syncs keep theirs


@pytest.mark.unit
def test_off_defines_the_schedule_stopped_even_for_an_enabled_system(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SPECS["user_kinds"].required_variables:
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
    loaded = warm_python.run(["-c", show], env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    kept = {spec.schedule.name for spec in SYNCS} - {"user_kind_sync_daily"} | {"prune_run_history_weekly"}
    assert loaded.stdout.strip() == str(sorted(kept))
    checked = warm_python.run(["-m", "sync_pipelines.config_check"], env=env)
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
    loaded = warm_python.run(["-c", show], env=env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    schedules = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in loaded.stdout.strip().splitlines()}
    assert schedules["bakalari_sync_every_15_minutes"].endswith(" 0,15,30,45 7-17 * * 1-5")
    assert schedules["rt_user_sync_daily"] == "STOPPED 0 1 * * *"
    assert schedules["user_kind_sync_daily"].endswith(" 0 3 * * *")


@pytest.mark.unit
@pytest.mark.parametrize("spec", SYNCS, ids=lambda spec: spec.job)
def test_a_sync_jobs_launchpad_lists_only_its_own_resources(spec) -> None:  # noqa: ANN001
    """Each sync job's own resources: its system's, its upstream assets', the state store, and the IO managers of
    the assets it runs."""
    from sync_pipelines.definitions import defs

    resolved = defs.resolve_job_def(spec.job)
    assert set(resolved.resource_defs) == job_resources(spec)
    # The launchpad's config editor offers what the job's config schema holds.
    schema = resolved.run_config_schema.config_type.fields["resources"].config_type.fields
    assert set(schema) == job_resources(spec)
    # sync_checks checks every system: it keeps them all.
    assert set(defs.resolve_job_def("sync_checks").resource_defs) >= job_resources(spec)


@pytest.mark.unit
def test_the_rt_jobs_launchpad_lists_rt_and_the_students_table() -> None:
    from sync_pipelines.definitions import defs

    assert set(defs.resolve_job_def("rt_user_sync").resource_defs) == {
        "request_tracker",
        "students_database",
        "state_table_io_manager",
        "sync_state",
        "io_manager",
    }
