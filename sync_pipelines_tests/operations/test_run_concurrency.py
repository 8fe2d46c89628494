"""Two runs of ``rt_user_sync`` started together, as the nightly schedule and the ``students_changed`` sensor can:
with the instance's ``sync/target`` limit of one run per target, the daemon starts the second only after the
first has finished, so their writes to RT never interleave and no user is written twice."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sync_pipelines.sync.shards import shard_of
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses, running_deployment
from sync_pipelines_tests.operations.graphql_api import TERMINAL, tag_map
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, rt_world

pytestmark = pytest.mark.e2e

PUT = "PUT /REST/2.0/user/{id}"
IN_PROGRESS = {"STARTING", "STARTED"}


@pytest.fixture(scope="module")
def state_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture(scope="module")
def world(new_database: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield rt_world(new_database, stack)


@pytest.fixture(scope="module")
def deployment(
    world: SyncWorld,
    state_url: str,
    new_database: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DagsterProcesses]:
    env = {**world.env, "SYNC_STATE_DATABASE_URL": state_url}
    home = Path(tmp_path_factory.mktemp("concurrency")) / "dagster_home"
    # Every schedule and sensor is stopped: the two runs below are the only ones.
    with running_deployment(home, new_database(), env) as processes:
        yield processes


def follow(deployment: DagsterProcesses, run_ids: list[str], timeout: float = 300) -> list[tuple[str, ...]]:
    """The runs' statuses, polled until all have ended (each distinct combination once, in order)."""
    seen: list[tuple[str, ...]] = []
    deadline = time.monotonic() + timeout
    while True:
        statuses = tuple(deployment.ui.run(run_id)["status"] for run_id in run_ids)
        if not seen or seen[-1] != statuses:
            seen.append(statuses)
        if all(status in TERMINAL for status in statuses):
            return seen
        if time.monotonic() > deadline:
            reports = "\n".join(deployment.ui.run_report(run_id) for run_id in run_ids)
            raise AssertionError(f"runs still going after {timeout} s: {seen}\n{reports}")
        time.sleep(0.2)


def test_a_scheduled_and_a_sensor_run_of_one_job_never_overlap(
    deployment: DagsterProcesses, world: SyncWorld, state_url: str
) -> None:
    ui = deployment.ui
    stale = world.stale()
    shard = shard_of(min(stale))
    world.sandbox.reset_counters()

    # The nightly schedule's run (every shard) and, a moment later, the sensor's run for one shard, both
    # tagged as the daemon tags them.
    scheduled = ui.launch("rt_user_sync", tags={"dagster/schedule_name": "rt_user_sync_daily"})
    sensed = ui.launch(
        "rt_user_sync",
        tags={
            "dagster/sensor_name": "students_changed",
            "dagster/partition": shard,
            "sync/trigger": "students_changed",
        },
    )
    history = follow(deployment, [scheduled, sensed])
    assert history[-1] == ("SUCCESS", "SUCCESS"), "\n".join(ui.run_report(r) for r in (scheduled, sensed))

    # Never both in progress; the sensor's run was seen waiting in the queue while the first one ran.
    assert not any(a in IN_PROGRESS and b in IN_PROGRESS for a, b in history), history
    assert any(a in IN_PROGRESS and b == "QUEUED" for a, b in history), history
    first, second = ui.run(scheduled), ui.run(sensed)
    assert tag_map(first["tags"])["sync/target"] == tag_map(second["tags"])["sync/target"] == "rt"
    assert first["endTime"] <= second["startTime"]
    # The daemon launched the second only once the first had finished.
    assert ui.event_times(scheduled)["RUN_SUCCESS"] <= ui.event_times(sensed)["RUN_STARTING"]

    # Every stale user was written exactly once, all by the first run; the second found nothing to do.
    assert world.stale() == set()
    assert world.sandbox.requests(PUT) == len(stale)
    audit = SyncStateStore.from_url(state_url).audit.rows("rt_user_custom_fields")
    written = Counter((row["record_key"], row["field"]) for row in audit)  # one audit row per field written
    assert {key for key, _ in written} == stale and set(written.values()) == {1}
    assert {row["run_id"] for row in audit} == {scheduled}
    assert {row["status"] for row in audit} == {"applied"}
    [second_summary] = [o["metadata"] for o in ui.observations("rt_user_custom_fields", sensed)]
    assert second_summary["updated"] == 0
