"""``bakalari_entities`` with a teacher account as the operator, as real schools give one: its timetable holds the
lessons of that teacher in two of the school's classes, shaped as recorded answers are (``"Students": []``,
groups listed once per lesson and named ``" 4.A"``, subject ids padded with a space). Every student's own answers
fill in the rest; nothing lying outside one account's view is judged gone, in a full run or in a run over one
shard. The Bakaláři sandbox over HTTP and EduRPG's Prisma schema on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.sandbox.bakalari import BakalariSandbox, SampleSchool
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.sync.shards import shard_of
from sync_pipelines_tests.bakalari.helpers import (
    counts,
    engine_for,
    entity_state,
    observation,
    refs,
    rows,
    run_sync,
    sync_resources,
    system_logs,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def teacher_account(school: SampleSchool) -> Iterator[ThreadedSandbox]:
    sandbox = BakalariSandbox(school, operator_view="teacher", full_name_with_class=True)
    with ThreadedSandbox(sandbox) as server:
        yield server


def test_a_teacher_account_and_the_students_answers_write_the_whole_school(
    teacher_account: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    sandbox = teacher_account.sandbox
    assert isinstance(sandbox, BakalariSandbox)
    teacher, seen = sandbox.teacher_view()
    assert len(seen) == 2 < len({student.class_id for student in school.students})
    engine = engine_for(edurpg_url)
    resources = sync_resources(teacher_account.url, edurpg_url)

    result = run_sync(resources)
    assert result.success
    # Every student's class, subjects and enrollments, though the operator sees two classes and one teacher.
    studied = {subject for student in school.students for subject in student.subject_ids}
    taught = {lesson.subject_id for lesson in sandbox._teacher_lessons()}
    assert set(refs(engine, "class")) == {student.class_id for student in school.students}
    assert set(refs(engine, "subject")) == studied | taught  # " 6" and "6" are one subject
    teachers = {t for student in school.students for t in student.subject_teachers.values()} | {teacher.id}
    assert {
        k for k, ref in refs(engine, "user").items() if ref["metadata"]["bakalariUserType"] == "teacher"
    } == (teachers)
    found = counts(engine)
    assert found["Enrollment"] == sum(len(student.subject_ids) for student in school.students)
    users = {row["bakalariId"]: row for row in rows(engine, "User")}
    class_refs = refs(engine, "class")
    for student in school.students:
        row = users[student.user_id]
        assert row["name"] == student.full_name  # ", <class>" dropped
        assert row["classId"] == class_refs[student.class_id]["internalId"]
    seen_groups = refs(engine, "class")[seen[0]]["metadata"]["bakalariGroupIds"]
    assert seen_groups and len(seen_groups) == len(set(seen_groups))  # listed once per lesson, kept once
    assert observation(result)["vanished"] == 0

    # A rerun writes nothing; a run over one shard writes nothing and judges nothing gone outside it.
    before = entity_state(engine)
    assert run_sync(resources).success and entity_state(engine) == before
    for shard in sorted({shard_of(student.user_id) for student in school.students})[:2]:
        one = run_sync(resources, partition=shard)
        assert one.success and observation(one)["vanished"] == 0
        assert entity_state(engine) == before
    assert not [row for row in system_logs(engine) if row["message"] == "sync_vanished"]
