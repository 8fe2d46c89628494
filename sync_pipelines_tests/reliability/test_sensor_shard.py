"""Defect 8: an ``rt_user_id`` stored as text with leading zeros (``'001001'``): the ``students_changed`` sensor
starts the shard the RT sync puts that student in (one function, ``student_shard``, on one normalised key)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from sync_pipelines.defs.rt.desired import desired_custom_fields
from sync_pipelines.defs.students.assets import students_frame
from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import student_shard, validate_students
from sync_pipelines.sync.shards import SHARD_KEYS, shard_of
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory

pytestmark = pytest.mark.integration


def test_the_sensor_starts_the_shard_the_asset_syncs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sync_pipelines.definitions import defs

    url = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    engine = sa.create_engine(url)
    rows = [("S1", "9", "001001"), ("S2", "10", "0042"), ("S3", "11", None)]
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE students (id TEXT, grade TEXT, rt_user_id TEXT)")
        connection.execute(
            sa.text("INSERT INTO students VALUES (:i, :g, :r)"),
            [dict(zip("igr", r, strict=True)) for r in rows],
        )
    assert shard_of("001001") != shard_of("1001")  # the case that went wrong

    sensor = defs.resolve_sensor_def("students_changed")
    resources = {"students_database": StudentsDatabase(database_url=url)}
    with instance_with_events_in_memory() as instance:
        repository = defs.get_repository_def()
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources, repository_def=repository)
        )
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE students SET grade = '12' WHERE id = 'S1'")
        second = sensor.evaluate_tick(
            dg.build_sensor_context(
                instance=instance, resources=resources, cursor=tick.cursor, repository_def=repository
            )
        )
    started = [request.partition_key for request in second.run_requests]

    raw = [{"student_id": i, "grade": g, "rt_user_id": r} for i, g, r in rows]
    frame = students_frame(validate_students(raw)[0])
    synced = [
        shard
        for shard in SHARD_KEYS
        if "1001"
        in desired_custom_fields(frame, "Grade", "Student ID", "grade", {shard}, date(2025, 1, 1))[0]
    ]
    assert started == synced == [shard_of("1001")]
    assert all(student_shard(r, i) == student_shard(str(int(r)) if r else None, i) for i, _, r in rows)


def test_the_sensor_ignores_inactive_students_as_the_sync_does(tmp_path) -> None:
    """An edit to a leaver's row (``is_active`` false) starts nothing: the RT sync would not write it."""
    from sync_pipelines.definitions import defs

    url = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE students (student_id TEXT, grade INT, rt_user_id INT, is_active BOOL NOT NULL)"
        )
        connection.exec_driver_sql("INSERT INTO students VALUES ('S1', 9, 1001, 1), ('L1', 12, 1002, 0)")
    sensor = defs.resolve_sensor_def("students_changed")
    resources = {"students_database": StudentsDatabase(database_url=url)}
    repository = defs.get_repository_def()
    with instance_with_events_in_memory() as instance:

        def tick(cursor: str | None) -> dg.SensorExecutionData:
            return sensor.evaluate_tick(
                dg.build_sensor_context(
                    instance=instance, resources=resources, cursor=cursor, repository_def=repository
                )
            )

        first = tick(None)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE students SET grade = 3 WHERE student_id = 'L1'")
        second = tick(first.cursor)
        assert second.run_requests == []
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE students SET grade = 10 WHERE student_id = 'S1'")
        third = tick(second.cursor)
    assert [request.partition_key for request in third.run_requests] == [shard_of("1001")]
