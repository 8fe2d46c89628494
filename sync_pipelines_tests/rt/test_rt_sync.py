"""``rt_user_sync`` end to end: the real job, the RT sandbox over HTTP, students on PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.databases import seed_students
from devkit.sandbox.rt import DEFAULT_TOKEN, RequestTrackerSandbox
from devkit.sandbox.sample_data import SampleStudent, generate_students
from devkit.sandbox.server import Knobs, ThreadedSandbox
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.definitions import defs
from sync_pipelines.defs.rt.desired import graduation_year
from sync_pipelines.sync.shards import SHARD_KEYS, shard_of
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.harness.row_errors import errors_table, records_check, summary_line

SIZE = 120
PUT = "PUT /REST/2.0/user/{id}"
GET = "GET /REST/2.0/user/{id}"
PAGES = "GET /REST/2.0/users"


@dataclass
class RtWorld:
    rt: ThreadedSandbox
    students: list[SampleStudent]
    students_url: str
    state_url: str
    instance: dg.DagsterInstance

    def run(
        self, config: dict[str, Any] | None = None, partition: str | None = None
    ) -> dg.ExecuteInProcessResult:
        job = defs.resolve_job_def("rt_user_sync")
        run_config = {"ops": {"rt_user_custom_fields": {"config": config}}} if config else None
        return job.execute_in_process(
            run_config=run_config, instance=self.instance, partition_key=partition, raise_on_error=False
        )

    def rt_values(self) -> dict[int, tuple[list[str], list[str]]]:
        users = self.rt.state()["users"]
        return {
            int(key): (user["CustomFields"].get("Grade", []), user["CustomFields"].get("Student ID", []))
            for key, user in users.items()
        }

    def expected(self, grade_of=lambda s: s.grade) -> dict[int, tuple[list[str], list[str]]]:
        return {
            s.rt_user_id: ([grade_of(s)], [s.student_id])
            for s in self.students
            if s.rt_user_id is not None and s.active
        }

    def differing(self) -> set[int]:
        current = self.rt_values()
        return {key for key, value in self.expected().items() if current.get(key) != value}


@contextlib.contextmanager
def rt_world(
    make_pg_url,
    monkeypatch: pytest.MonkeyPatch,
    size: int = SIZE,
    seed: int = 11,
    knobs_seed: int = 1,
    state_url: str | None = None,
    students_url: str | None = None,
    roster: Callable[[list[SampleStudent]], list[SampleStudent]] | None = None,
) -> Iterator[RtWorld]:
    """``size`` sample students in the Django model's table (on ``students_url``, default a fresh PostgreSQL
    database; ``roster`` may change the sample's rows first), an RT sandbox holding their users, the sync's
    variables set, and a Dagster instance; the state on ``state_url`` (default: a fresh PostgreSQL database)."""
    students = generate_students(size, seed=seed)
    students = roster(students) if roster else students
    students_url, state_url = students_url or make_pg_url(), state_url or make_pg_url()
    seed_students(students_url, students, schema="django")
    sandbox = RequestTrackerSandbox.from_sample(size, seed=seed, knobs=Knobs(seed=knobs_seed))
    with ThreadedSandbox(sandbox) as rt:
        for name, value in {
            "STUDENTS_DATABASE_URL": students_url,
            "RT_URL": rt.url,
            "RT_TOKEN": DEFAULT_TOKEN,
            "SYNC_STATE_DATABASE_URL": state_url,
        }.items():
            monkeypatch.setenv(name, value)
        with instance_with_events_in_memory() as instance:
            yield RtWorld(rt, students, students_url, state_url, instance)


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch) as world:
        yield world


def run_checks(world: RtWorld) -> dg.ExecuteInProcessResult:
    """The RT checks as the ``sync_checks`` job runs them (the other systems' checks need their servers): the RT
    asset's prerequisite without the sync, and the drift check."""
    from sync_pipelines.definitions import location
    from sync_pipelines.defs.rt.checks import rt_matches_students
    from sync_pipelines.defs.students.assets import students

    prerequisite = dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_custom_fields_exist")
    return dg.materialize(
        [students, location.syncs["rt"].asset, rt_matches_students],
        selection=dg.AssetSelection.checks(prerequisite, rt_matches_students),
        resources=dict(defs.resources),
        instance=world.instance,
        raise_on_error=False,
    )


def observation(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    events = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return events[-1].event_specific_data.asset_observation.metadata


@pytest.mark.integration
def test_first_run_writes_exactly_the_differing_users_and_the_second_none(world: RtWorld) -> None:
    differing = world.differing()
    assert 0 < len(differing) < len(world.expected())
    first = world.run()
    assert first.success
    assert world.rt.requests(PUT) == len(differing)
    assert world.rt_values() | world.expected() == world.rt_values()
    assert {k: v for k, v in world.rt_values().items() if k in world.expected()} == world.expected()
    summary = observation(first)
    assert summary["updated"].value == len(differing)
    assert summary["skipped_no_rt_user"].value == sum(1 for s in world.students if s.rt_user_id is None)
    # The asset's own requests: one custom field listing, one user read to see which fields apply to users, pages
    # of 100 users (the first run reads every user), one PUT per changed user.
    assert world.rt.requests(GET) == 0
    # GET /users: one user read by the blocking check and one by the asset (which fields apply to users), pages.
    assert world.rt.requests(PAGES) <= 2 + math.ceil(len(world.rt.state()["users"]) / 100)
    assert summary["requests_made"].value == 1 + (world.rt.requests(PAGES) - 1) + world.rt.requests(PUT)
    # One materialization per shard, each with its own counts.
    materializations = first.asset_materializations_for_node("rt_user_custom_fields")
    assert sorted(m.partition for m in materializations) == SHARD_KEYS
    assert sum(m.metadata["updated_in_shard"].value for m in materializations) == len(differing)
    # Every write is audited.
    audit = SyncStateStore.from_url(world.state_url).audit.rows("rt_user_custom_fields")
    assert {row["record_key"] for row in audit} == {str(key) for key in differing}
    assert {row["status"] for row in audit} == {"applied"}

    world.rt.reset_counters()
    second = world.run()
    assert second.success
    assert world.rt.requests(PUT) == 0
    assert world.rt.requests(GET) == 0
    assert observation(second)["updated"].value == 0


def with_leavers(students: list[SampleStudent]) -> list[SampleStudent]:
    """The roster as the student system's CSV import leaves it: four students with RT users have left
    (inactive), and two current students hold an RT user that an old inactive row of theirs still names."""
    with_rt = [s for s in students if s.rt_user_id is not None]
    leavers = {s.student_id for s in with_rt[:4]}
    old_rows = [
        dataclasses.replace(s, student_id=f"OLD{s.student_id}", grade="9", active=False) for s in with_rt[4:6]
    ]
    return [dataclasses.replace(s, active=s.student_id not in leavers) for s in students] + old_rows


@pytest.mark.integration
@pytest.mark.parametrize("students_backend", ["postgresql", "sqlite"])
def test_inactive_students_are_skipped_and_their_rt_users_left_alone(
    make_pg_url, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, students_backend: str
) -> None:
    students_url = (
        make_pg_url() if students_backend == "postgresql" else f"sqlite:///{tmp_path / 'sis.sqlite'}"
    )
    with rt_world(make_pg_url, monkeypatch, students_url=students_url, roster=with_leavers) as world:
        leavers = {
            s.rt_user_id for s in world.students if not s.active and not s.student_id.startswith("OLD")
        }
        shared = {s.rt_user_id for s in world.students if s.student_id.startswith("OLD")}
        before = world.rt_values()
        # The sample's RT users of leavers hold other values than the leavers' rows: a sync would rewrite them.
        stale = [s for s in world.students if s.rt_user_id in leavers and not s.active]
        assert any(before[s.rt_user_id] != ([s.grade], [s.student_id]) for s in stale)
        differing = world.differing()
        first = world.run()
        assert first.success
        after = world.rt_values()
        assert {key: after[key] for key in leavers} == {key: before[key] for key in leavers}
        assert world.rt.requests(PUT) == len(differing)
        assert {key: after[key] for key in world.expected()} == world.expected()
        for key in shared:  # the current student's values, not the old row's grade 9
            active = next(s for s in world.students if s.rt_user_id == key and s.active)
            assert after[key] == ([active.grade], [active.student_id])
        summary = observation(first)
        assert summary["skipped_inactive"].value == len(leavers) + len(shared)
        checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
        assert checks["students_unique_rt_user_ids"] is True
        students_metadata = first.asset_materializations_for_node("students")[0].metadata
        assert students_metadata["inactive"].value == len(leavers) + len(shared)
        assert students_metadata["invalid"].value == 0
        world.rt.reset_counters()
        assert world.run().success
        assert world.rt.requests(PUT) == 0


@pytest.mark.integration
def test_dry_run_shows_the_plan_and_writes_nothing(world: RtWorld) -> None:
    before = world.rt_values()
    result = world.run({"dry_run": True})
    assert result.success
    assert world.rt.requests(PUT) == 0
    assert world.rt_values() == before
    metadata = observation(result)
    assert metadata["dry_run"].value is True
    # How the requests in flight adapted is part of the run's record, in one short line.
    in_flight = metadata["requests_in_flight"].value
    found = re.fullmatch(
        r"adaptive: ended at (\d+) of 8 \(lowest \d+, highest \d+\) over (\d+) answers; slowing signals: .+",
        in_flight,
    )
    assert found, in_flight
    assert 1 <= int(found[1]) <= 8 and int(found[2]) >= metadata["requests_made"].value - 1
    assert metadata["planned_updates"].value == len(world.differing())
    table = metadata["plan"].value
    some_user = min(world.differing())
    student_id = next(s.student_id for s in world.students if s.rt_user_id == some_user)
    # Named as a person knows the record: the student id, beside the RT user id the sync writes to.
    assert f"| {student_id} (RT user {some_user}) | update |" in table
    assert result.asset_materializations_for_node("rt_user_custom_fields") == []
    assert SyncStateStore.from_url(world.state_url).audit.rows() == []
    # Dry runs stand out in the Runs list and on the asset's events.
    run = world.instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags.get("sync/dry_run") == "true"
    observed = [
        e.event_specific_data.asset_observation  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert [o.tags.get("sync/dry_run") for o in observed] == ["true"]


@pytest.mark.integration
def test_converges_under_injected_503s_and_429_bursts(world: RtWorld) -> None:
    world.rt.set_knobs(error_rate=0.1, burst_429=5, retry_after_seconds=0.2, seed=4)
    for _ in range(3):
        if world.run().success:
            break
    assert world.differing() == set()
    statuses = world.rt.stats()["statuses"]
    assert statuses.get("429", 0) >= 5 and sum(statuses.get(s, 0) for s in ("500", "502", "503")) > 0


@pytest.mark.integration
def test_missing_custom_field_fails_before_any_write(world: RtWorld) -> None:
    world.rt.change_state({"action": "remove_custom_field", "name": "Grade"})
    result = world.run()
    assert not result.success
    assert world.rt.requests(PUT) == 0
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = checks["rt_custom_fields_exist"]
    assert failed.passed is False
    assert "RT has no user custom field 'Grade'" in failed.description
    assert "'Student ID'" in failed.description and "'Department'" in failed.description


@pytest.mark.integration
def test_unknown_user_and_refused_value_are_row_errors_of_a_green_run(world: RtWorld) -> None:
    """A user RT no longer has and values RT refuses fail those records only: the run succeeds (they are fewer
    than SYNC_MAX_RECORD_ERRORS_PERCENT), names them in its records_synced warning, and the next run retries
    them."""
    targets = sorted(world.differing())
    gone, refused = targets[0], targets[1]
    refused_grade = world.expected()[refused][0][0]
    world.rt.change_state({"action": "delete_user", "user_id": gone})
    # RT refuses one grade value (and so every user who should get it).
    world.rt.change_state(
        {
            "action": "set_pattern",
            "field": "Grade",
            "pattern": f"(?#Not {refused_grade})^(?!{refused_grade}$).*$",
        }
    )
    result = world.run({"full_refresh": True})
    assert result.success
    table = errors_table(result, "rt_user_custom_fields")
    assert re.search(
        rf"\| \S+ \(RT user {gone}\) \| could not be read from rt_user_custom_fields \| RT has no user", table
    )
    assert re.search(
        rf"\| \S+ \(RT user {refused}\) \| could not be written to rt_user_custom_fields \| RT refused", table
    )
    assert "with " in summary_line(result, "rt_user_custom_fields")
    assert records_check(result, "rt_user_custom_fields").severity is dg.AssetCheckSeverity.WARN
    # The healthy shards are materialized; shards holding a failed record are not.
    materialized = {m.partition for m in result.asset_materializations_for_node("rt_user_custom_fields")}
    assert shard_of(str(gone)) not in materialized
    assert len(materialized) >= 1
    # Users whose values RT refused keep their old values; the Student ID part of the same PUT was
    # refused together with the Grade, so nothing is half-written.
    assert world.rt.requests(PUT) >= 1
    # The next run retries exactly the failed users.
    world.rt.change_state({"action": "set_pattern", "field": "Grade", "pattern": "^.*$"})
    world.rt.reset_counters()
    retry = world.run()
    assert retry.success
    assert f"(RT user {gone}) | could not be read" in errors_table(
        retry, "rt_user_custom_fields"
    )  # still gone
    assert refused not in world.differing()


@pytest.mark.integration
def test_bad_token_stops_the_run_at_once(world: RtWorld) -> None:
    world.rt.change_state({"action": "set_token", "token": "another-token"})
    result = world.run()
    assert not result.success
    failures = [event.step_failure_data.error for event in result.all_events if event.is_step_failure]
    text = " ".join(str(error) for error in failures)
    assert "RT refused the credentials" in text and "RT_TOKEN" in text
    assert DEFAULT_TOKEN not in text
    assert world.rt.requests(PUT) == 0
    assert world.rt.stats()["total_requests"] == 1


@pytest.mark.integration
def test_graduation_year_mode(world: RtWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_GRADE_VALUE", "graduation_year")
    assert world.run().success
    expected = world.expected(lambda s: str(graduation_year(s.grade, date.today())))
    actual = {k: v for k, v in world.rt_values().items() if k in expected}
    assert actual == expected


@pytest.mark.integration
def test_limit_and_batches(world: RtWorld) -> None:
    result = world.run({"limit": 10, "batch_size": 3, "batch_delay_seconds": 0.05})
    assert result.success
    assert world.rt.requests(PUT) <= 10
    written = world.rt.requests(PUT)
    batches = -(-written // 3)
    logs = [entry.user_message for entry in world.instance.all_logs(result.run_id)]
    assert any(f"batch 1/{batches}: 3/{written} records" in line for line in logs)
    assert any(f"batch {batches}/{batches}: {written}/{written} records" in line for line in logs)


@pytest.mark.integration
def test_one_shard_alone(world: RtWorld) -> None:
    shard = shard_of(str(min(world.differing())))
    result = world.run(partition=shard)
    assert result.success
    in_shard = {k for k in world.expected() if shard_of(str(k)) == shard}
    assert world.differing() & in_shard == set()
    assert world.differing() - in_shard
    assert [m.partition for m in result.asset_materializations_for_node("rt_user_custom_fields")] == [shard]


@pytest.mark.integration
def test_drift_check_sees_hand_edits_and_full_refresh_repairs_them(world: RtWorld) -> None:
    assert world.run().success
    edited = next(iter(world.expected()))
    world.rt.change_state(
        {"action": "set_custom_field", "user_id": edited, "field": "Grade", "values": ["1999"]}
    )
    world.rt.reset_counters()
    checks = run_checks(world)
    drift = {e.check_name: e for e in checks.get_asset_check_evaluations()}["rt_matches_students"]
    assert drift.passed is False
    assert drift.metadata["users_differing"].value == 1
    assert str(edited) in drift.metadata["examples"].value
    assert world.rt.requests(PUT) == 0  # checks write nothing
    # The delta run trusts what it last wrote, so it does not see the hand edit...
    world.rt.reset_counters()
    assert world.run().success and world.rt.requests(PUT) == 0
    assert edited in world.differing()
    # ...a full refresh reads RT again and repairs it.
    assert world.run({"full_refresh": True}).success
    assert world.differing() == set()


@pytest.mark.integration
def test_sensor_starts_a_run_for_the_changed_shard_only(world: RtWorld) -> None:
    sensor = defs.resolve_sensor_def("students_changed")
    resources = {"students_database": defs.resources["students_database"]}
    repository = defs.get_repository_def()
    first = sensor.evaluate_tick(
        dg.build_sensor_context(instance=world.instance, resources=resources, repository_def=repository)
    )
    assert first.run_requests == [] and first.cursor
    engine = create_database_engine(world.students_url, "STUDENTS_DATABASE_URL")
    student = next(s for s in world.students if s.rt_user_id is not None)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE students SET grade = 12 WHERE student_id = :id"), {"id": student.student_id}
        )
    second = sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=world.instance, resources=resources, cursor=first.cursor, repository_def=repository
        )
    )
    assert [r.partition_key for r in second.run_requests] == [shard_of(str(student.rt_user_id))]
    third = sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=world.instance, resources=resources, cursor=second.cursor, repository_def=repository
        )
    )
    assert third.run_requests == []


@pytest.mark.integration
def test_a_select_grade_field_is_compared_and_written_as_rt_does(world: RtWorld) -> None:
    """Grade turned into a Select listing K..11, some users holding ``k`` by hand: those are left alone (RT counts
    ``k`` as ``K``), grade 12 is never sent and is named once per run, and the drift check agrees."""
    assert world.run().success
    kindergarten = [key for key, (grade, _) in world.expected().items() if grade == ["K"]]
    twelfth = [key for key, (grade, _) in world.expected().items() if grade == ["12"]]
    assert kindergarten and twelfth
    for user in kindergarten:
        world.rt.change_state(
            {"action": "set_custom_field", "user_id": user, "field": "Grade", "values": ["k"]}
        )
        world.rt.change_state(
            {"action": "set_custom_field", "user_id": user, "field": "Student ID", "values": []}
        )
    for user in twelfth:
        world.rt.change_state({"action": "set_custom_field", "user_id": user, "field": "Grade", "values": []})
    world.rt.change_state(
        {"action": "set_field", "field": "Grade", "Type": "Select", "Values": ["K", *map(str, range(1, 12))]}
    )
    world.rt.reset_counters()

    result = world.run({"full_refresh": True})
    assert result.success
    # The kindergarten users get their Student ID back, not their grade; twelfth graders get nothing.
    assert world.rt.requests(PUT) == len(kindergarten)
    values = world.rt_values()
    assert {tuple(values[user][0]) for user in kindergarten} == {("k",)}
    assert {tuple(values[user][0]) for user in twelfth} == {()}
    logs = [entry.user_message for entry in world.instance.all_logs(result.run_id)]
    said = [line for line in logs if "'Grade' is a Select" in line]
    assert len(said) == 1 and "'12'" in said[0] and f"not sent for {len(twelfth)} user(s)" in said[0]
    assert observation(result)["values_not_sent"].value == {"Grade": {"12": len(twelfth)}}

    world.rt.reset_counters()
    assert world.run({"full_refresh": True}).success
    assert world.rt.requests(PUT) == 0
    drift = {e.check_name: e for e in run_checks(world).get_asset_check_evaluations()}["rt_matches_students"]
    assert drift.passed, drift.metadata
