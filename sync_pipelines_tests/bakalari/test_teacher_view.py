"""What a Bakaláři account sees: answers shaped as real ones (``captures/``, written by this project from recorded
facts) through the parsers and the mapping. A teacher's timetable holds two classes and one teacher; the desired
state is the union of the teacher's and every student's answers; ids are normalised the same everywhere; and
nothing is judged gone for lying outside one account's view (pure logic, no server, no database)."""

from __future__ import annotations

import itertools
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sync_pipelines.defs.bakalari.accounts import NEEDS_LOGIN, SchoolReading, StudentReading
from sync_pipelines.defs.bakalari.answers import (
    ClassInfo,
    SubjectInfo,
    SubjectRow,
    TeacherInfo,
    UserRecord,
    parse_subject_rows,
    parse_timetable_lookups,
    parse_user,
    uid_prefix,
)
from sync_pipelines.defs.bakalari.desired import REF, DesiredEntities, build_desired, placeholder_email
from sync_pipelines.defs.bakalari.edurpg import EduRpgSnapshot, StudentAccount
from sync_pipelines.sync.plan import plan_changes

pytestmark = pytest.mark.unit

CAPTURES = Path(__file__).parent / "captures"
# RFC 5322's dot-atom local part and a domain: what an address may be without quoting.
ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[a-z0-9.-]+")


@cache
def capture(name: str) -> Any:
    return json.loads((CAPTURES / f"{name}.json").read_text(encoding="utf-8"))


def teacher_school() -> SchoolReading:
    """The teacher account's view, read as ``read_school`` reads it."""
    lookups = parse_timetable_lookups(capture("teacher_timetable_permanent"))
    rows, problems = parse_subject_rows(capture("teacher_subjects"), owner="Subject:operator")
    return SchoolReading(
        lookups, rows, [*lookups.problems, *problems], uid_prefix(capture("teacher_user")["UserUID"])
    )


def captured_student() -> StudentReading:
    user = parse_user(capture("student_user"))
    rows, problems = parse_subject_rows(capture("student_subjects"), owner=f"Enrollment:{user.uid}")
    return StudentReading(StudentAccount("s1", user.uid, "rt"), user, rows, problems)


def student(
    uid: str, school_class: ClassInfo, subjects: list[tuple[str, str, str]], user_id: str
) -> StudentReading:
    """A student of a class the teacher does not see: ``subjects`` as (subject id, abbreviation, teacher id)."""
    rows = [
        SubjectRow(SubjectInfo(s, a, f"Předmět {a}"), TeacherInfo(t, t, f"Učitel {t}"))
        for s, a, t in subjects
    ]
    return StudentReading(
        StudentAccount(user_id, uid, "rt"), UserRecord(uid, f"Žák {uid}", "student", school_class), rows
    )


OTHER_CLASS = ClassInfo("3F", "K1.B", "K1.B")
OTHER = ("4321/S9Q1", OTHER_CLASS, [("21", "D", "U  30"), ("33", "Ch", "U  41")], "s2")


def counter_ids():
    numbers = itertools.count(1)
    return lambda: f"c{next(numbers):024d}"


def written(entities: DesiredEntities) -> EduRpgSnapshot:
    """EduRPG as a run that wrote ``entities`` leaves it."""
    snapshot = EduRpgSnapshot()
    for key, desired in entities.desired.items():
        kind, external = key.split(":", 1)
        row = {name: value for name, value in desired.items() if name != REF}
        if kind == "Class":
            snapshot.classes[row["id"]] = row
        elif kind == "Subject":
            snapshot.subjects[row["id"]] = row
        elif kind == "User":
            snapshot.users[row["id"]] = {"email": f"{row['id']}@x", "classId": None, **row}
        else:
            snapshot.enrollments[row["userId"], row["subjectId"]] = row
            external = f"{row['userId']}-{row['subjectId']}"
        snapshot.refs[kind.lower(), external] = {
            "type": kind.lower(),
            "externalId": external,
            "internalId": row["id"],
            "metadata": desired[REF]["metadata"],
        }
    snapshot.reindex()
    return snapshot


def test_a_teachers_timetable_gives_its_two_classes_and_one_teacher_with_ids_trimmed() -> None:
    school = teacher_school()
    lookups = school.lookups
    assert [(c.id, c.abbrev, c.name) for c in lookups.classes] == [
        ("2D", "P4.A", "P4.A"),
        ("2J", "T3.C", "T3.C"),
    ]
    assert [s.id for s in lookups.subjects] == ["6", "14"]
    assert [t.id for t in lookups.teachers] == ["U  12"]  # inner spaces are the id's own
    assert {g.abbrev for g in lookups.groups} == {"4.A", "3.C sk1"} and not school.problems
    assert school.uid_prefix == "4321"
    assert [row.subject.id for row in school.subject_rows] == ["6", "14"]


def test_the_union_of_the_teachers_and_the_students_answers_is_written() -> None:
    entities = build_desired(
        teacher_school(), [captured_student(), student(*OTHER)], EduRpgSnapshot(), counter_ids()
    )
    desired = entities.desired
    assert sorted(k for k in desired if k.startswith("Class:")) == ["Class:2D", "Class:2J", "Class:3F"]
    assert sorted(k for k in desired if k.startswith("Subject:")) == [
        "Subject:14",
        "Subject:21",
        "Subject:33",
        "Subject:6",
    ]
    assert sorted(k for k in desired if k.startswith("User:")) == [
        "User:4321/S7K2",
        "User:4321/S9Q1",
        "User:U  12",
        "User:U  30",
        "User:U  41",
    ]
    assert sorted(k for k in desired if k.startswith("Enrollment:")) == [
        "Enrollment:4321/S7K2-21",
        "Enrollment:4321/S7K2-6",
        "Enrollment:4321/S9Q1-21",
        "Enrollment:4321/S9Q1-33",
    ]
    # Classes whose code starts with a letter: synced, with EduRPG's default grade, and reported.
    assert (desired["Class:2D"]["name"], desired["Class:2D"]["grade"]) == ("P4.A", 1)
    assert entities.grade_defaulted == ["K1.B", "P4.A", "T3.C"]
    # A group the timetable lists once per lesson is one group of its class.
    assert desired["Class:2D"][REF]["metadata"]["bakalariGroupIds"] == ["5X"]
    eva = desired["User:4321/S7K2"]
    assert eva["name"] == "Svobodová Eva" and eva["classId"] == desired["Class:2D"]["id"]
    assert eva["email"] == "4321/S7K2@bakalari.local"
    # The teacher's id keeps its inner spaces everywhere; the placeholder e-mail is a valid address.
    teacher = desired["User:U  12"]
    assert teacher["bakalariId"] == "4321/U  12" and teacher[REF]["metadata"]["bakalariUserId"] == "U  12"
    assert teacher["email"] == "U%20%2012@bakalari.local"
    for row in desired.values():
        if "email" in row:
            assert ADDRESS.fullmatch(row["email"]), row["email"]
    assert entities.vanished == [] and entities.skips == []


@pytest.mark.parametrize("bakalari_id", ["U  12", " Ž1", "a..b", ".x.", "1234/the_id", "x%20y", "ok"])
def test_placeholder_emails_are_valid_addresses_and_one_to_one(bakalari_id: str) -> None:
    email = placeholder_email(bakalari_id)
    assert ADDRESS.fullmatch(email), email
    others = ["U  12", " Ž1", "a..b", ".x.", "1234/the_id", "x%20y", "ok", "U 12", "x y"]
    assert sum(placeholder_email(other) == email for other in others) == 1


def test_a_rerun_plans_nothing_and_judges_nothing_gone() -> None:
    readings = [captured_student(), student(*OTHER)]
    first = build_desired(teacher_school(), readings, EduRpgSnapshot(), counter_ids())
    snapshot = written(first)
    for user in snapshot.users.values():  # the students' class, as the first run wrote it
        user["classId"] = first.desired.get(f"User:{user['bakalariId']}", {}).get("classId")
    again = build_desired(teacher_school(), readings, snapshot, counter_ids())
    assert plan_changes("t", again.desired, again.current, again.skips).to_write == []
    assert again.vanished == []


def test_nothing_outside_the_runs_view_is_judged_gone() -> None:
    """After a full run, a run that reads only the captured student (one shard), and one in which the other
    student's token no longer works: the other student's class K1.B, their subjects 21 and 33, and the teachers
    only they show, lie outside every account read, and are still not gone."""
    readings = [captured_student(), student(*OTHER)]
    first = build_desired(teacher_school(), readings, EduRpgSnapshot(), counter_ids())
    snapshot = written(first)
    for user in snapshot.users.values():
        user["classId"] = first.desired.get(f"User:{user['bakalariId']}", {}).get("classId")
    one_shard = build_desired(teacher_school(), [captured_student()], snapshot, counter_ids(), complete=False)
    assert one_shard.vanished == []
    unread = StudentReading(StudentAccount("s2", OTHER[0], "rt"), category=NEEDS_LOGIN, reason="expired")
    full = build_desired(
        teacher_school(), [captured_student(), unread], snapshot, counter_ids(), complete=True
    )
    assert full.vanished == []


def test_an_entity_no_account_shows_any_more_is_judged_gone() -> None:
    """The other student, read, has moved to the captured class and dropped subject 33: K1.B, subject 33 and its
    teacher U  41 are shown by no account (every account read whole), and are gone."""
    readings = [captured_student(), student(*OTHER)]
    first = build_desired(teacher_school(), readings, EduRpgSnapshot(), counter_ids())
    snapshot = written(first)
    for user in snapshot.users.values():
        user["classId"] = first.desired.get(f"User:{user['bakalariId']}", {}).get("classId")
    moved = student(OTHER[0], ClassInfo("2D", "P4.A", ""), [("21", "D", "U  30")], "s2")
    dropped = f"Enrollment:{first.desired['User:4321/S9Q1']['id']}-{first.desired['Subject:33']['id']}"
    after = build_desired(teacher_school(), [captured_student(), moved], snapshot, counter_ids())
    assert sorted(v.key for v in after.vanished) == [
        "Class:3F",
        dropped,
        "Subject:33",
        "User:U  41",
    ]
    # A run over some shards judges classes and subjects, but never teachers.
    partial = build_desired(
        teacher_school(), [captured_student(), moved], snapshot, counter_ids(), complete=False
    )
    assert sorted(v.key for v in partial.vanished) == ["Class:3F", dropped, "Subject:33"]
