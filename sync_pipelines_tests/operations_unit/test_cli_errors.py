"""Errors a person reads in one line: every failure the project raises on purpose reaches ``dagster job execute``
as a ``Failure`` whose first line is the cause and the setting to check, and the output stays short."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.databases import student_rows
from devkit.sandbox.sample_data import SampleStudent
from devkit.sandbox.server import free_port
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines_tests.harness import warm_python
from sync_pipelines_tests.harness.world import JobResult, SyncWorld, start_world

pytestmark = pytest.mark.e2e

SPECS = {spec.system: spec for spec in SYNCS}
MAX_LINES = 120  # the cause, Dagster's own stack trace of the step, and the run's debug lines


@pytest.fixture(scope="module")
def world(postgres_server) -> Iterator[SyncWorld]:
    with ExitStack() as stack:
        yield start_world(stack, size=20, postgres=postgres_server)


FAILURE = "dagster._core.definitions.events.Failure: "


def first_error(result: JobResult) -> str:
    """The first error a person sees: the first ERROR log line, or for a failed step the ``Failure`` it ends
    with (the step's own ERROR line only says that it failed)."""
    lines = result.output.splitlines()
    for index, line in enumerate(lines):
        if " - ERROR - " not in line:
            continue
        if "STEP_FAILURE" in line:
            return next(text.removeprefix(FAILURE) for text in lines[index:] if text.startswith(FAILURE))
        return line.rsplit(" - ", 1)[1]
    raise AssertionError(f"no error in:\n{result.output[-3000:]}")


def run_with(
    world: SyncWorld, job: str, config: dict[str, object] | None = None, **changes: str
) -> JobResult:
    result = world.run_job(job, config, env={**world.env, **changes})
    assert not result.succeeded
    assert len(result.output.splitlines()) <= MAX_LINES, result.output
    return result


def two_attempts(system: str, key: str) -> dict[str, object]:
    """Run config giving the ``key`` resource of ``system``'s sync two attempts per request; its other fields
    read from the variables the resource is declared with (run config replaces the declared config whole)."""
    resource = getattr(SPECS[system].resources, key)
    declared = {
        name: {"env": value.env_var_name}
        for name in type(resource).model_fields
        if isinstance(value := getattr(resource, name), dg.EnvVar)
    }
    return {"resources": {key: {"config": {**declared, "max_attempts": 2}}}}


def test_an_unreachable_server_names_the_url_variable_and_says_refused(world: SyncWorld) -> None:
    port = free_port()  # nothing listens there
    # Two attempts, not five: the message after the last is the point, not the backoff (core/test_http.py's).
    result = run_with(
        world,
        "rt_user_sync",
        two_attempts("rt", "request_tracker"),
        RT_URL=f"http://127.0.0.1:{port}",
    )
    assert first_error(result) == (
        f"RT POST customfields: RT could not be reached at http://127.0.0.1:{port}/REST/2.0/ "
        "(connection refused); check RT_URL"
    )
    result = run_with(
        world,
        "bakalari_sync",
        two_attempts("bakalari", "bakalari"),
        BAKALARI_URL=f"http://127.0.0.1:{port}",
    )
    assert first_error(result).endswith(
        f"Bakaláři could not be reached at http://127.0.0.1:{port}/ (connection refused); check BAKALARI_URL"
    )


def test_refused_credentials_name_the_variables(world: SyncWorld) -> None:
    result = run_with(world, "rt_user_sync", RT_TOKEN="not-the-token")
    assert re.fullmatch(
        r"RT refused the credentials \(HTTP 401 on \S+\); check RT_TOKEN \(and RT_URL\)", first_error(result)
    )
    assert "not-the-token" not in result.output


def test_a_missing_field_or_table_names_the_setting(world: SyncWorld) -> None:
    result = run_with(world, "rt_user_sync", RT_GRADE_FIELD="Homeroom")
    assert first_error(result).startswith(
        "RT_GRADE_FIELD / RT_STUDENT_ID_FIELD: RT has no user custom field 'Homeroom'; the user custom fields RT "
        "has are: "
    )
    no_users_table = world.url("SYNC_STATE_DATABASE_URL")
    result = run_with(world, "user_kind_sync", ZLV_DATABASE_URL=no_users_table)
    assert first_error(result) == "ZLV_DATABASE_URL: the database has no table 'users'"


def test_an_unusable_database_url_names_the_setting_without_the_password(world: SyncWorld) -> None:
    port = free_port()
    result = run_with(
        world, "rt_user_sync", STUDENTS_DATABASE_URL=f"postgresql://sis:s3cret@127.0.0.1:{port}/sis"
    )
    assert first_error(result).startswith(
        f"STUDENTS_DATABASE_URL: could not connect to postgresql+psycopg://sis:***@127.0.0.1:{port}/sis: "
    )
    assert "s3cret" not in result.output


def test_a_failed_record_is_a_row_error_and_past_the_threshold_fails_the_run_naming_it(
    world: SyncWorld,
) -> None:
    """A student whose RT user RT does not have: the run succeeds, its summary line saying so; with
    SYNC_MAX_RECORD_ERRORS_PERCENT below that one record's share, the same run fails in one line naming it."""
    students = create_database_engine(world.url("STUDENTS_DATABASE_URL"), "STUDENTS_DATABASE_URL")
    table = sa.Table("students", sa.MetaData(), autoload_with=students)
    with students.begin() as connection:
        connection.execute(
            sa.insert(table), student_rows([SampleStudent("S-NO-RT-USER", "A", "B", "5", 99999)], "django")
        )
    try:
        green = world.run_job("rt_user_sync", env=world.env)
        red = run_with(world, "rt_user_sync", SYNC_MAX_RECORD_ERRORS_PERCENT="1")
    finally:
        with students.begin() as connection:
            connection.execute(sa.text("DELETE FROM students WHERE student_id = 'S-NO-RT-USER'"))
    assert green.succeeded, green.output[-3000:]
    assert (
        "with 1 record error(s) (1 record(s) could not be read from rt_user_custom_fields; the next run retries "
        "them)" in green.output
    )
    assert re.match(
        r"rt_user_custom_fields: 1 record error\(s\) in \d+ record\(s\) \(\d+ %\), more than "
        r"SYNC_MAX_RECORD_ERRORS_PERCENT=1 allows: 1 record\(s\) could not be read from rt_user_custom_fields; "
        r"the next run retries them: 99999: ",
        first_error(red),
    ), first_error(red)


def test_a_listed_system_without_its_token_fails_at_once_and_the_other_system_runs(world: SyncWorld) -> None:
    """RT listed without RT_TOKEN: its run fails before any step reads a system, the first error names RT_TOKEN,
    and the user-kinds sync of the same deployment still succeeds."""
    unset = {**world.env, "SYNC_SYSTEMS": "rt,user_kinds", "RT_TOKEN": ""}
    result = run_with(world, "rt_user_sync", **unset)
    assert first_error(result) == (
        "rt cannot run: RT_TOKEN is not set (rt is listed in SYNC_SYSTEMS); set it or leave rt out of SYNC_SYSTEMS"
    )
    lines = result.output.splitlines()
    first = next(index for index, line in enumerate(lines) if "RT_TOKEN" in line)
    assert first < 15, result.output
    assert (
        "students - STEP_START" not in result.output
    )  # the upstream snapshot is not taken: it fails at once
    other = world.run_job("user_kind_sync", env=unset)
    assert other.succeeded, other.output[-3000:]


def test_a_wrong_numeric_setting_fails_the_run_at_once_naming_it(world: SyncWorld) -> None:
    """``RT_REQUESTS_PER_SECOND=nan`` failed the run with "1 blocking asset check failed": the run now fails before
    any step reads a system, with the variable's one line, and the configuration check says the same."""
    result = run_with(world, "rt_user_sync", RT_REQUESTS_PER_SECOND="nan")
    assert first_error(result) == "rt cannot run: RT_REQUESTS_PER_SECOND: must be a finite number, got 'nan'"
    assert "students - STEP_START" not in result.output
    assert "blocking asset check" not in result.output
    checked = warm_python.run(
        ["-m", "sync_pipelines.config_check"],
        env={**os.environ, **world.env, "RT_REQUESTS_PER_SECOND": "nan", "SYNC_RUN_RETENTION_DAYS": "0"},
    )
    assert checked.returncode == 1, checked.stderr[-2000:]
    assert checked.stdout.splitlines() == [
        "SYNC_RUN_RETENTION_DAYS: must be at least 1 day, got '0'; the runs reading it fail until it is fixed",
        "RT_REQUESTS_PER_SECOND: must be a finite number, got 'nan'; the runs reading it fail until it is fixed",
    ]
