"""Scheduled runs with the real daemon: a ``students_changed`` tick becomes a queued run that the daemon's run
queue starts and that syncs the changed shard against the RT sandbox.

The sensor's first tick only records what the students look like (its cursor), and the daemon holds the next back
for ``minimum_interval_seconds`` (60 s). Rather than wait for both, the test gives the sensor, as the UI's "Set
cursor" does, the cursor its first look records on the students as seeded (the sensor evaluated in this process,
as ``rt/test_rt_sync.py`` tests it tick by tick), then changes a student before the daemon starts: the daemon's
first tick sees the change.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import defs
from sync_pipelines.sync.shards import shard_of
from sync_pipelines_tests.operations.dagster_processes import (
    DagsterProcesses,
    environment,
    running_deployment,
)
from sync_pipelines_tests.operations.graphql_api import tag_map
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, rt_world

pytestmark = pytest.mark.e2e

SENSOR = "students_changed"
TIMEZONE = "Europe/Prague"


@dataclass(frozen=True)
class Change:
    """A student moved up a grade before the daemon started, and what was stale in RT before."""

    key: str  # the student's RT user id
    student_id: str
    new_grade: int
    stale_before: set[str]


@pytest.fixture(scope="module")
def world(new_database: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield rt_world(new_database, stack)


def first_look_cursor(world: SyncWorld) -> str:
    """The cursor the sensor's first tick records on the students as they are now."""
    sensor = defs.resolve_sensor_def(SENSOR)
    with environment(world.env), dg.DagsterInstance.ephemeral() as instance:
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(
                instance=instance,
                resources={"students_database": defs.resources["students_database"]},
                repository_def=defs.get_repository_def(),
            )
        )
    assert tick.run_requests == [] and tick.cursor, tick
    return tick.cursor


def move_a_student_up(world: SyncWorld) -> Change:
    """A student moves up a grade in the student information system."""
    stale = world.stale()
    key = min(stale)
    engine = create_database_engine(world.databases["students"], "STUDENTS_DATABASE_URL")
    with engine.begin() as connection:
        student_id, grade = connection.execute(
            sa.text("SELECT student_id, grade FROM students WHERE rt_user_id = :id"), {"id": int(key)}
        ).one()
        new_grade = 12 if grade != 12 else 11
        connection.execute(
            sa.text("UPDATE students SET grade = :grade WHERE student_id = :id"),
            {"grade": new_grade, "id": student_id},
        )
    engine.dispose()
    return Change(key, student_id, new_grade, stale)


@pytest.fixture(scope="module")
def change(world: SyncWorld) -> list[Change]:
    """Filled by the deployment, before its daemon starts."""
    return []


@pytest.fixture(scope="module")
def deployment(
    world: SyncWorld,
    change: list[Change],
    new_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DagsterProcesses]:
    env = {**world.env, "SYNC_STATE_DATABASE_URL": new_database(), "SYNC_TIMEZONE": TIMEZONE}
    home = Path(tmp_path_factory.mktemp("scheduler")) / "dagster_home"

    def before_daemon(processes: DagsterProcesses) -> None:
        processes.ui.set_sensor_cursor(SENSOR, first_look_cursor(world))
        change.append(move_a_student_up(world))

    with running_deployment(
        home, new_database(), env, keep_running={SENSOR}, before_daemon=before_daemon
    ) as processes:
        yield processes


def wait_for_tick(deployment: DagsterProcesses, accept: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        ticks = deployment.ui.sensor_ticks(SENSOR)
        found = [tick for tick in ticks if accept(tick)]
        if found:
            return found[0]
        failed = [tick for tick in ticks if tick["status"] == "FAILURE"]
        if failed or time.monotonic() > deadline:
            raise AssertionError(
                f"no matching {SENSOR} tick within {timeout} s; ticks: {ticks}\n{deployment.log_tails()}"
            )
        time.sleep(0.5)


def test_a_sensor_tick_queues_a_run_that_the_daemon_starts_and_that_syncs_the_changed_shard(
    deployment: DagsterProcesses, world: SyncWorld, change: list[Change]
) -> None:
    ui = deployment.ui
    assert ui.sensor(SENSOR)["sensorState"]["status"] == "RUNNING"
    [moved] = change
    shard = shard_of(moved.key)

    # The daemon's first tick requests a run for that student's shard...
    tick = wait_for_tick(deployment, lambda tick: tick["status"] != "STARTED", timeout=150)
    assert tick["status"] == "SUCCESS", tick
    [run_id] = tick["runIds"]
    # ...which the daemon's run queue starts, and which succeeds.
    run = ui.wait_for_success(run_id, timeout=180)
    tags = tag_map(run["tags"])
    assert tags["dagster/sensor_name"] == SENSOR
    assert tags["dagster/partition"] == shard
    assert tags["sync/trigger"] == SENSOR
    events = ui.event_times(run_id)
    # Queued by the sensor daemon, launched by the run queue (RUN_STARTING), then run by a worker.
    assert events["RUN_ENQUEUED"] <= events["RUN_STARTING"] <= events["RUN_START"] <= events["RUN_SUCCESS"]

    # RT holds the new grade, and only the sensor's shard was synced.
    custom_fields = world.sandbox.state()["users"][moved.key]["CustomFields"]
    assert custom_fields["Grade"] == [str(moved.new_grade)]
    assert custom_fields["Student ID"] == [moved.student_id]
    after = world.stale()
    stale = moved.stale_before
    assert {k for k in after if shard_of(k) == shard} == {moved.key}  # stale only against the seeded grade
    assert {k for k in after if shard_of(k) != shard} == {k for k in stale if shard_of(k) != shard}


def test_the_daily_schedule_ticks_at_one_in_sync_timezone(deployment: DagsterProcesses) -> None:
    schedule = deployment.ui.schedule("rt_user_sync_daily")
    assert schedule["executionTimezone"] == TIMEZONE
    [next_tick] = schedule["futureTicks"]["results"]
    local = datetime.fromtimestamp(next_tick["timestamp"], ZoneInfo(TIMEZONE))
    assert (local.hour, local.minute) == (1, 0)
