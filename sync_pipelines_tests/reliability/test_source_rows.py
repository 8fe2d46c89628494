"""Defect 5: odd source rows are skipped and reported, the others go on; database errors never carry their
parameters (other students' names and grades) into the event log."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from sync_pipelines.core.redaction import describe_error
from sync_pipelines.defs.shared.failures import as_failure
from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager
from sync_pipelines.defs.students.validation import validate_students
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory
from sync_pipelines_tests.students.test_students_asset import materialize_students

pytestmark = pytest.mark.integration

ROWS = [
    ("S1", "Ada", "Good", "9", "1001"),
    ("S2", "Bob", "Overflow", "9", "99999999999999999999"),  # passed validation, overflowed the snapshot
    ("S3", "Cyd", "Too big for RT", "9", "2147483648"),
    ("S4", "Dan", "Nul\x00Name", "10", "1004"),  # names are never read: the row is good
    ("S5", "Eve", "Bell\x07", "11", "1005"),
    ("S6\x00", "Fay", "Id", "12", "1006"),
    ("S7", "Gil", "Fine", "K", "001007"),
]


def test_bad_rows_are_skipped_and_reported_and_the_snapshot_is_stored(tmp_path, pg_url: str) -> None:
    students_url = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    engine = sa.create_engine(students_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE students (id TEXT, first_name TEXT, last_name TEXT, grade TEXT, rt_user_id TEXT)"
        )
        connection.execute(
            sa.text("INSERT INTO students VALUES (:i, :f, :l, :g, :r)"),
            [dict(zip("iflgr", row, strict=True)) for row in ROWS],
        )
    result = materialize_students(students_url, pg_url)
    assert result.success
    metadata = result.asset_materializations_for_node("students")[0].metadata
    assert metadata["row_count"].value == 4 and metadata["invalid"].value == 3
    stored = pd.read_sql_table("asset_students", sa.create_engine(pg_url.replace("://", "+psycopg://", 1)))
    assert sorted(stored["student_id"]) == ["S1", "S4", "S5", "S7"]
    assert sorted(stored["rt_user_id"].tolist()) == [1001, 1004, 1005, 1007]
    assert list(stored.columns) == ["student_id", "grade", "rt_user_id", "active"]
    _, invalid = validate_students(
        [
            dict(zip(["student_id", "first_name", "last_name", "grade", "rt_user_id"], r, strict=True))
            for r in ROWS
        ]
    )
    reasons = " ".join(row.reason for row in invalid)
    assert "up to 2147483647" in reasons and "U+0000" in reasons


@dg.asset(io_manager_key="state_table_io_manager")
def roster() -> pd.DataFrame:
    return pd.DataFrame({"name": ["Private Person", "Other \x00 Pupil"], "grade": ["7", "8"]})


def test_a_database_error_is_reported_without_its_parameters(pg_url: str) -> None:
    state = SyncStateResource(database_url=pg_url)
    with instance_with_events_in_memory() as instance:
        result = dg.materialize(
            [roster],
            resources={"sync_state": state, "state_table_io_manager": SyncStateTableIOManager(state=state)},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        texts = [
            text
            for entry in instance.all_logs(result.run_id)
            for text in (entry.user_message or "", repr(entry.dagster_event))
        ]
    assert any("database error" in text for text in texts)
    assert not any("Private Person" in text or "parameters" in text for text in texts)


def test_describe_error_drops_statement_and_parameters() -> None:
    error = sa.exc.IntegrityError(
        "INSERT INTO t VALUES (%(a)s)", {"a": "Private Person"}, Exception("dup\nDETAIL: x")
    )
    assert describe_error(error) == "Exception: dup"
    failure = as_failure(error)
    assert "Private Person" not in str(failure.description) + repr(failure.metadata)
