"""The ``students`` asset on PostgreSQL and SQLite, both schemas, with bad rows and bad settings."""

from __future__ import annotations

import concurrent.futures
import threading

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from devkit.sandbox.databases import seed_students
from devkit.sandbox.sample_data import SampleStudent, generate_students
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager
from sync_pipelines.defs.students.assets import students
from sync_pipelines.defs.students.checks import students_unique_ids, students_unique_rt_user_ids
from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import GRADE_LABELS

pytestmark = pytest.mark.integration


def materialize_students(students_url: str, state_url: str, **database: object) -> dg.ExecuteInProcessResult:
    state = SyncStateResource(database_url=state_url)
    return dg.materialize(
        [students, students_unique_ids, students_unique_rt_user_ids],
        resources={
            "students_database": StudentsDatabase(database_url=students_url, **database),
            "sync_state": state,
            "state_table_io_manager": SyncStateTableIOManager(state=state),
        },
        raise_on_error=False,
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def urls(request: pytest.FixtureRequest, tmp_path) -> tuple[str, str]:
    if request.param == "postgresql":
        make = request.getfixturevalue("make_pg_url")
        return make(), make()
    return f"sqlite:///{tmp_path / 'sis.sqlite'}", f"sqlite:///{tmp_path / 'state.sqlite'}"


@pytest.mark.parametrize("schema", ["legacy", "django"])
def test_students_snapshot_is_validated_and_stored(urls: tuple[str, str], schema: str) -> None:
    students_url, state_url = urls
    sample = generate_students(200, seed=3)
    seed_students(students_url, sample, schema=schema)
    result = materialize_students(students_url, state_url)
    assert result.success
    materialization = result.asset_materializations_for_node("students")[0]
    metadata = materialization.metadata
    assert metadata["row_count"].value == 200
    assert metadata["invalid"].value == 0
    assert metadata["without_rt_user_id"].value == sum(1 for s in sample if s.rt_user_id is None)
    grades = metadata["grade_distribution"].value
    assert sum(grades.values()) == 200 and grades["K"] == sum(1 for s in sample if s.grade == "K")
    # The value lives in the sync state database, where a step in another process can read it.
    stored = pd.read_sql_table("asset_students", create_database_engine(state_url, "state"))
    assert len(stored) == 200
    first = stored.sort_values("student_id").iloc[0]
    assert first["student_id"] == sample[0].student_id and first["grade"] == sample[0].grade
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"students_unique_ids": True, "students_unique_rt_user_ids": True}


def test_bad_rows_are_skipped_and_listed(urls: tuple[str, str]) -> None:
    students_url, state_url = urls
    seed_students(students_url, generate_students(20, seed=1), schema="legacy")
    engine = create_database_engine(students_url, "x")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO students (id, grade, rt_user_id) VALUES "
                "('BAD1', '13', '5001'), ('BAD2', 'abc', NULL), ('BAD3', '4', 'x'), ('BAD4', '4', '-1'), "
                "('DUP1', '5', '7000'), ('DUP2', '6', '7000')"
            )
        )
    result = materialize_students(students_url, state_url)
    assert result.success
    metadata = result.asset_materializations_for_node("students")[0].metadata
    assert metadata["row_count"].value == 20
    assert metadata["invalid"].value == 6
    table = metadata["invalid_rows"].value
    assert "| BAD1 | grade '13' is not K or 1..12 |" in table
    assert "| DUP1 | rt_user_id 7000 is also given to DUP2 |" in table


def test_custom_column_names(urls: tuple[str, str]) -> None:
    students_url, state_url = urls
    engine = create_database_engine(students_url, "x")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pupils (pupil_no TEXT, year_level TEXT, helpdesk_id TEXT)"))
        connection.execute(sa.text("INSERT INTO pupils VALUES ('P1', 'K', '77'), ('P2', '3', NULL)"))
    result = materialize_students(
        students_url,
        state_url,
        table="pupils",
        id_column="pupil_no",
        grade_column="year_level",
        rt_user_id_column="helpdesk_id",
    )
    assert result.success
    assert result.asset_materializations_for_node("students")[0].metadata["row_count"].value == 2


def test_missing_table_names_the_setting(urls: tuple[str, str]) -> None:
    students_url, _ = urls
    with pytest.raises(
        ConfigurationError, match="STUDENTS_DATABASE_URL: the database has no table 'students'"
    ):
        StudentsDatabase(database_url=students_url).read_rows()


def test_missing_column_names_it(urls: tuple[str, str]) -> None:
    students_url, _ = urls
    engine = create_database_engine(students_url, "x")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE students (id TEXT, grade TEXT)"))
    with pytest.raises(ConfigurationError, match="has no column\\(s\\) 'rt_user_id'"):
        StudentsDatabase(database_url=students_url).read_rows()


def test_unreachable_database_is_one_clear_sentence() -> None:
    with pytest.raises(ConfigurationError) as raised:
        StudentsDatabase(database_url="postgresql://sis:hunter22@127.0.0.1:1/sis").read_rows()
    message = str(raised.value)
    assert message.startswith(
        "STUDENTS_DATABASE_URL: could not connect to postgresql+psycopg://sis:***@127.0.0.1:1/sis"
    )
    assert "hunter22" not in message


def test_garbage_url_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="STUDENTS_DATABASE_URL: is not a database URL"):
        StudentsDatabase(database_url="not a url").read_rows()


def test_django_table_keeps_inactive_rows_out_of_the_rt_users_they_shared(urls: tuple[str, str]) -> None:
    """The Django model's table as its migration makes it: grades 0..12, leavers inactive, an RT user named by
    an old inactive row and by the current student, and two active rows sharing one (still an error)."""
    students_url, state_url = urls
    sample = [
        SampleStudent(f"S{grade:02d}", "Ada", "Current", "K" if grade == 0 else str(grade), 2000 + grade)
        for grade in range(13)
    ]
    sample += [
        SampleStudent("L1", "Old", "Leaver", "12", 3001, active=False),
        SampleStudent("OLD-S05", "Old", "Row", "4", 2005, active=False),  # S05 holds RT user 2005 now
        SampleStudent("A1", "Twin", "One", "3", 4000),
        SampleStudent("A2", "Twin", "Two", "3", 4000),
    ]
    seed_students(students_url, sample, schema="django")
    result = materialize_students(students_url, state_url)
    assert result.success
    metadata = result.asset_materializations_for_node("students")[0].metadata
    assert metadata["active"].value == 13 and metadata["inactive"].value == 2
    assert metadata["invalid"].value == 2  # A1 and A2: two active students cannot share an RT user
    assert "| A1 | rt_user_id 4000 is also given to A2 |" in metadata["invalid_rows"].value
    assert metadata["grade_distribution"].value == {label: 1 for label in GRADE_LABELS}
    stored = pd.read_sql_table("asset_students", create_database_engine(state_url, "state"))
    assert set(stored.columns) == {"student_id", "grade", "rt_user_id", "active"}
    inactive = set(stored.loc[~stored["active"].astype(bool), "student_id"])
    assert inactive == {"L1", "OLD-S05"}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"students_unique_ids": True, "students_unique_rt_user_ids": True}


def test_operator_named_active_column(urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    students_url, state_url = urls
    engine = create_database_engine(students_url, "x")
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE students (id TEXT, grade TEXT, rt_user_id TEXT, current INT)")
        )
        connection.execute(sa.text("INSERT INTO students VALUES ('P1', 'K', '77', 1), ('P2', '3', '77', 0)"))
    monkeypatch.setenv("STUDENTS_ACTIVE_COLUMN", "current")
    rows = StudentsDatabase(database_url=students_url).read_rows()
    assert [(row["student_id"], bool(row["active"])) for row in rows] == [("P1", True), ("P2", False)]
    monkeypatch.setenv("STUDENTS_ACTIVE_COLUMN", "enrolled")
    with pytest.raises(ConfigurationError, match="^STUDENTS_ACTIVE_COLUMN: table 'students' has no column"):
        StudentsDatabase(database_url=students_url).read_rows()


def test_snapshot_replaced_by_runs_at_once(urls: tuple[str, str]) -> None:
    """Runs of one sync (say, a scheduled one and an operator's) store the snapshot at the same moment, also the
    very first time, when there is no table yet: each replacement is whole, none fails on another's table."""
    _, state_url = urls
    manager = SyncStateTableIOManager(state=SyncStateResource(database_url=state_url))
    frames = [
        pd.DataFrame({"student_id": [f"S{n}-{i}" for i in range(50)], "grade": ["5"] * 50}) for n in range(6)
    ]
    rounds = 12
    start_together = threading.Barrier(len(frames), timeout=60)

    def store(frame: pd.DataFrame) -> None:
        for round_number in range(rounds):
            start_together.wait()
            context = dg.build_output_context(asset_key=dg.AssetKey(f"students_{round_number}"))
            manager.handle_output(context, frame)

    with concurrent.futures.ThreadPoolExecutor(len(frames)) as pool:
        futures = [pool.submit(store, frame) for frame in frames]
        concurrent.futures.wait(futures, timeout=300)
    # The writer's own error, not the barrier the other writers then found broken.
    errors = [future.exception() for future in futures]
    assert [e for e in errors if e and not isinstance(e, threading.BrokenBarrierError)] == []
    assert errors == [None] * len(frames)
    engine = create_database_engine(state_url, "state")
    for round_number in range(rounds):
        stored = pd.read_sql_table(f"asset_students_{round_number}", engine)
        # Whole: the 50 rows of exactly one of the writers, not a mix and not nothing.
        assert len(stored) == 50 and stored["student_id"].str.split("-").str[0].nunique() == 1
