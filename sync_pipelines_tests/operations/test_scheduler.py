"""Scheduled runs with the real daemon: a ``students_changed`` tick becomes a queued run that the daemon's run
queue starts and that syncs the changed shard against the RT sandbox.

The sensor's first tick only records what the students look like (its cursor); a change is seen by the next
tick, which the daemon holds back for ``minimum_interval_seconds`` (60 s). The test waits for both, as an
operator would, rather than shortening the interval or setting the cursor by hand.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync.shards import shard_of
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses, running_deployment
from sync_pipelines_tests.operations.graphql_api import tag_map
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, rt_world

pytestmark = pytest.mark.e2e

SENSOR = "students_changed"
TIMEZONE = "Europe/Prague"


@pytest.fixture(scope="module")
def world(new_database: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield rt_world(new_database, stack)


@pytest.fixture(scope="module")
def deployment(
    world: SyncWorld, new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterProcesses]:
    env = {**world.env, "SYNC_STATE_DATABASE_URL": new_database(), "SYNC_TIMEZONE": TIMEZONE}
    home = Path(tmp_path_factory.mktemp("scheduler")) / "dagster_home"
    with running_deployment(home, new_database(), env, keep_running={SENSOR}) as processes:
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
        time.sleep(1)


def test_a_sensor_tick_queues_a_run_that_the_daemon_starts_and_that_syncs_the_changed_shard(
    deployment: DagsterProcesses, world: SyncWorld
) -> None:
    ui = deployment.ui
    assert ui.sensor(SENSOR)["sensorState"]["status"] == "RUNNING"
    first = wait_for_tick(deployment, lambda tick: tick["status"] == "SKIPPED", timeout=120)
    assert "first look" in first["skipReason"] and first["runIds"] == []

    # A student moves up a grade in the student information system.
    stale = world.stale()
    key = min(stale)
    shard = shard_of(key)
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

    # The next tick (a minute after the first) requests a run for that student's shard...
    tick = wait_for_tick(deployment, lambda tick: tick["status"] == "SUCCESS", timeout=150)
    assert tick["timestamp"] - first["timestamp"] >= 60
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
    custom_fields = world.sandbox.state()["users"][key]["CustomFields"]
    assert custom_fields["Grade"] == [str(new_grade)]
    assert custom_fields["Student ID"] == [student_id]
    after = world.stale()
    assert {k for k in after if shard_of(k) == shard} == {key}  # stale only against the seeded grade
    assert {k for k in after if shard_of(k) != shard} == {k for k in stale if shard_of(k) != shard}


def test_the_daily_schedule_ticks_at_one_in_sync_timezone(deployment: DagsterProcesses) -> None:
    schedule = deployment.ui.schedule("rt_user_sync_daily")
    assert schedule["executionTimezone"] == TIMEZONE
    [next_tick] = schedule["futureTicks"]["results"]
    local = datetime.fromtimestamp(next_tick["timestamp"], ZoneInfo(TIMEZONE))
    assert (local.hour, local.minute) == (1, 0)
