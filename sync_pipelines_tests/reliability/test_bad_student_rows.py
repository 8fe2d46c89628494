"""Random student rows (hypothesis): no run crashes on a bad row, every bad row is reported, good rows sync."""

from __future__ import annotations

import string

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.sandbox.rt import DEFAULT_TOKEN, RequestTrackerSandbox
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.students.validation import validate_students
from sync_pipelines_tests.harness.instance import instance_with_events_in_memory

pytestmark = pytest.mark.integration

garbage_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=string.digits, min_size=1, max_size=4),
    st.sampled_from(["K", "k", "13", "-1", "0", " 7 ", "abc", "", "１２", "<html>", "x" * 5000, "Ø", "9.5"]),
)
grades = st.one_of(st.none(), st.integers(-5, 20), st.floats(allow_nan=True), garbage_text)
rt_ids = st.one_of(st.none(), st.integers(-3, 10**12), st.floats(allow_nan=True), garbage_text, st.booleans())
ids = st.one_of(
    st.none(), garbage_text, st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=8)
)
rows = st.lists(
    st.fixed_dictionaries({"student_id": ids, "grade": grades, "rt_user_id": rt_ids}), max_size=40
)


@given(rows)
@settings(max_examples=300, deadline=None)
def test_every_row_is_either_valid_or_reported(raw: list[dict]) -> None:
    valid, invalid = validate_students(raw)
    assert len(valid) + len(invalid) == len(raw)
    assert all(row.reason for row in invalid)
    for student in valid:
        assert student.student_id.strip() == student.student_id and student.student_id
        assert student.grade in {"K", *map(str, range(1, 13))}
        assert student.rt_user_id is None or student.rt_user_id > 0
    rt_ids_used = [s.rt_user_id for s in valid if s.rt_user_id is not None]
    assert len(rt_ids_used) == len(set(rt_ids_used))
    assert len({s.student_id for s in valid}) == len(valid)


text_rows = st.lists(
    st.fixed_dictionaries(
        {
            "grade": st.one_of(st.none(), st.sampled_from(["K", "3", "12", "13", "abc", "", "Ω", "9" * 300])),
            "rt_user_id": st.one_of(
                st.none(), st.sampled_from(["1001", "1002", "1003", "x", "-1", "", "1001.5", "１"])
            ),
        }
    ),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def rt_sandbox():
    with ThreadedSandbox(RequestTrackerSandbox.from_sample(10, seed=2)) as rt:
        yield rt


@given(text_rows)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_rows_through_the_rt_sync(
    rt_sandbox: ThreadedSandbox, make_pg_url, monkeypatch, raw: list[dict]
):
    from sync_pipelines.definitions import defs

    students_url, state_url = make_pg_url(), make_pg_url()
    engine = create_database_engine(students_url, "STUDENTS_DATABASE_URL")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE students (id TEXT, grade TEXT, rt_user_id TEXT)"))
        for number, row in enumerate(raw):
            connection.execute(
                sa.text("INSERT INTO students VALUES (:id, :grade, :rt)"),
                {"id": f"S{number}", "grade": row["grade"], "rt": row["rt_user_id"]},
            )
    for name, value in {
        "STUDENTS_DATABASE_URL": students_url,
        "SYNC_STATE_DATABASE_URL": state_url,
        "RT_URL": rt_sandbox.url,
        "RT_TOKEN": DEFAULT_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    valid, invalid = validate_students([{"student_id": f"S{n}", **row} for n, row in enumerate(raw)])
    with instance_with_events_in_memory() as instance:
        result = defs.resolve_job_def("rt_user_sync").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert result.success
    students_metadata = result.asset_materializations_for_node("students")[0].metadata
    assert students_metadata["invalid"].value == len(invalid)
    assert students_metadata["row_count"].value == len(valid)
    users = rt_sandbox.state()["users"]
    for student in valid:
        if student.rt_user_id is not None and str(student.rt_user_id) in users:
            fields = users[str(student.rt_user_id)]["CustomFields"]
            assert fields["Grade"] == [student.grade]
            assert fields["Student ID"] == [student.student_id]


def test_a_ten_kilobyte_grade_is_reported_and_every_other_student_synced(make_pg_url, monkeypatch) -> None:
    """A grade of 10,240 digits (past Python's int conversion limit) in the old schema's text column: that
    student is a reported invalid row, and the run writes every other student to RT."""
    from devkit.sandbox.databases import seed_students
    from devkit.sandbox.sample_data import generate_students
    from sync_pipelines.definitions import defs

    sample = generate_students(30, seed=4)
    victim = next(s for s in sample if s.rt_user_id is not None)
    students_url = make_pg_url()
    seed_students(students_url, sample, schema="legacy")
    with create_database_engine(students_url, "STUDENTS_DATABASE_URL").begin() as connection:
        connection.execute(
            sa.text("UPDATE students SET grade = :grade WHERE id = :id"),
            {"grade": "1" * 10_240, "id": victim.student_id},
        )
    with ThreadedSandbox(RequestTrackerSandbox.from_sample(30, seed=4)) as rt:
        untouched = rt.state()["users"][str(victim.rt_user_id)]
        for name, value in {
            "STUDENTS_DATABASE_URL": students_url,
            "SYNC_STATE_DATABASE_URL": make_pg_url(),
            "RT_URL": rt.url,
            "RT_TOKEN": DEFAULT_TOKEN,
        }.items():
            monkeypatch.setenv(name, value)
        with instance_with_events_in_memory() as instance:
            result = defs.resolve_job_def("rt_user_sync").execute_in_process(
                instance=instance, raise_on_error=False
            )
        users = rt.state()["users"]
    assert result.success
    metadata = result.asset_materializations_for_node("students")[0].metadata
    assert (metadata["invalid"].value, metadata["row_count"].value) == (1, 29)
    assert f"| {victim.student_id} | grade '1111" in metadata["invalid_rows"].value
    assert "(10240 characters) is not K or 1..12 |" in metadata["invalid_rows"].value
    for student in sample:
        if student.rt_user_id is None:
            continue
        fields = users[str(student.rt_user_id)]["CustomFields"]
        if student is victim:
            assert users[str(student.rt_user_id)] == untouched
        else:
            assert (fields["Grade"], fields["Student ID"]) == ([student.grade], [student.student_id])
