"""Pure logic: parsing Bakaláři answers and mapping them onto EduRPG rows (no server, no database)."""

from __future__ import annotations

import itertools

import pytest

from sync_pipelines.defs.bakalari.accounts import SchoolReading, StudentReading
from sync_pipelines.defs.bakalari.answers import (
    ClassInfo,
    MalformedAnswer,
    SchoolLookups,
    SubjectInfo,
    SubjectRow,
    TeacherInfo,
    UserRecord,
    bare_id,
    class_grade,
    edurpg_grade,
    parse_subject_rows,
    parse_timetable_lookups,
    parse_user,
    same_account,
    uid_prefix,
)
from sync_pipelines.defs.bakalari.desired import (
    REF,
    build_desired,
    record_shard,
    subject_codes,
)
from sync_pipelines.defs.bakalari.edurpg import EduRpgSnapshot, StudentAccount
from sync_pipelines.sync.plan import Action, plan_changes
from sync_pipelines.sync.shards import shard_of

pytestmark = pytest.mark.unit


def counter_ids():
    numbers = itertools.count(1)
    return lambda: f"new{next(numbers)}"


@pytest.mark.parametrize(
    ("abbrev", "grade"), [("2.B", 2), ("12.A", 12), (" 3E", 3), ("Příp", None), ("", None), ("B.2", None)]
)
def test_class_grade_is_the_leading_digits(abbrev: str, grade: int | None) -> None:
    assert class_grade(abbrev) == grade


def test_parse_user_strips_the_class_suffix_and_requires_a_class() -> None:
    body = {
        "UserUID": "prefix/U1",
        "FullName": "Novák Jan, 2.B",
        "UserType": "Student",
        "Class": {"Id": "ZX", "Abbrev": "2.B", "Name": "2. B"},
    }
    user = parse_user(body)
    assert (user.full_name, user.user_type, user.school_class.id) == ("Novák Jan", "student", "ZX")
    with pytest.raises(MalformedAnswer, match="no Class"):
        parse_user({**body, "Class": None})
    # A class without leading digits is a class (EduRPG gives it grade 1), not a malformed answer.
    assert (
        parse_user({**body, "Class": {"Id": "ZX", "Abbrev": "X.A", "Name": "X.A"}}).school_class.abbrev
        == "X.A"
    )
    with pytest.raises(MalformedAnswer, match="Class has no Id"):
        parse_user({**body, "Class": {"Abbrev": "2.B"}})
    with pytest.raises(MalformedAnswer):
        parse_user(["not", "an", "object"])


def test_parse_subject_rows_keeps_good_rows_and_names_bad_ones() -> None:
    body = {
        "Subjects": [
            {"SubjectID": None, "SubjectName": "Fyzika", "SubjectAbbrev": "F"},
            {
                "SubjectID": "M1",
                "SubjectName": "Matematika",
                "SubjectAbbrev": "M",
                "TeacherID": "UT1",
                "TeacherName": "Mgr. A",
                "TeacherEmail": "a@school.cz",
            },
        ]
    }
    rows, problems = parse_subject_rows(body, owner="Enrollment:U1")
    assert [row.subject.id for row in rows] == ["M1"]
    assert rows[0].teacher == TeacherInfo("UT1", "", "Mgr. A", "a@school.cz")
    assert problems[0].key == "Enrollment:U1-(row 1)"
    assert "without a SubjectID (Fyzika)" in problems[0].reason
    with pytest.raises(MalformedAnswer):
        parse_subject_rows({"Subjects": {"oops": 1}}, owner="x")


def test_timetable_lookups() -> None:
    body = {
        "Classes": [{"Id": "C1", "Abbrev": "1.A", "Name": "1. A"}, {"Abbrev": "2.A"}],
        "Groups": [{"ClassId": "C1", "Id": "G1", "Abbrev": "1.A S1", "Name": "x"}],
        "Subjects": [{"Id": "S1", "Abbrev": "M", "Name": "Matematika"}, {"Abbrev": "F"}],
        "Teachers": [{"Id": "T1", "Abbrev": "No", "Name": "Mgr. Novák"}],
    }
    lookups = parse_timetable_lookups(body)
    assert [c.id for c in lookups.classes] == ["C1"]
    assert [g.id for g in lookups.groups] == ["G1"]
    assert [s.id for s in lookups.subjects] == ["S1"]
    assert [t.id for t in lookups.teachers] == ["T1"]
    assert [p.key for p in lookups.problems] == ["Class:(row 2)", "Subject:(row 2)"]


def test_same_account() -> None:
    assert same_account("U1", "U1", None)
    assert same_account("U1", "1234/U1", None)
    assert same_account("U1", "other", "U1")
    assert not same_account("U1", "U2", "U2")


def test_subject_codes_are_unique() -> None:
    codes = subject_codes(
        [SubjectInfo("A", "AJ", "x"), SubjectInfo("B", "AJ", "y"), SubjectInfo("C", "", "z")]
    )
    assert codes == {"A": "AJ (A)", "B": "AJ (B)", "C": "C"}


def test_record_shard_follows_the_student() -> None:
    assert record_shard("Enrollment:UAB12-ZX") == shard_of("UAB12") == record_shard("User:UAB12")
    assert record_shard("Enrollment:UAB12-(row 1)") == shard_of("UAB12")


def school_reading() -> SchoolReading:
    lookups = SchoolLookups(
        classes=[ClassInfo("C1", "1.A", "1. A"), ClassInfo("C2", "Přípravka", "Přípravka")],
        subjects=[SubjectInfo("S1", "M", "Matematika"), SubjectInfo("S2", "F", "Fyzika")],
        teachers=[TeacherInfo("T1", "No", "Mgr. Novák"), TeacherInfo("T2", "Dv", "Ing. Dvořák")],
    )
    rows = [
        SubjectRow(SubjectInfo("S1", "M", "Matematika"), TeacherInfo("T1", "No", "Mgr. Novák", "novak@s.cz")),
        SubjectRow(SubjectInfo("S2", "F", "Fyzika"), TeacherInfo("T2", "Dv", "Ing. Dvořák", "taken@s.cz")),
    ]
    return SchoolReading(lookups, rows, [])


def student(
    bakalari_id: str, class_info: ClassInfo, subjects: list[str], user_id: str = "u1"
) -> StudentReading:
    return StudentReading(
        StudentAccount(user_id, bakalari_id, "token"),
        user=UserRecord(bakalari_id, "Žák Jan", "student", class_info),
        subject_rows=[SubjectRow(SubjectInfo(s, s, s), None) for s in subjects],
    )


def test_build_desired_maps_creates_and_skips() -> None:
    snapshot = EduRpgSnapshot(
        users={
            "u1": {
                "id": "u1",
                "email": "U1@bakalari.local",
                "name": "Žák Jan",
                "role": "STUDENT",
                "classId": None,
                "bakalariId": "U1",
            },
            "x": {
                "id": "x",
                "email": "taken@s.cz",
                "name": "Someone",
                "role": "STUDENT",
                "classId": None,
                "bakalariId": None,
            },
        }
    )
    school = school_reading()
    students = [
        student("U1", ClassInfo("C1", "1.A", "1. A"), ["S1", "S2"]),
        student("U2", ClassInfo("C2", "Přípravka", "x"), ["S1"], user_id="u2"),
        student("U3", ClassInfo("C3", "1234567890.A", "x"), ["S1"], user_id="u3"),
    ]
    entities = build_desired(school, students, snapshot, counter_ids())
    plan = plan_changes("t", entities.desired, entities.current, entities.skips)
    actions = {record.key: record.action for record in plan.records}
    assert actions["Class:C1"] is Action.CREATE
    assert actions["Class:C2"] is Action.CREATE  # no digits in "Přípravka": EduRPG's grade 1
    assert entities.desired["Class:C2"]["grade"] == 1 and entities.grade_defaulted == ["Přípravka"]
    assert actions["Class:C3"] is Action.SKIP  # more digits than a grade can have
    assert actions["User:U1"] is Action.UPDATE  # adopted from the login row
    assert actions["User:U2"] is Action.CREATE  # the defaulted class's student is synced
    assert entities.desired["User:U2"]["classId"] == entities.desired["Class:C2"]["id"]
    assert actions["User:U3"] is Action.SKIP  # its class was skipped
    assert actions["User:T1"] is Action.CREATE
    assert actions["User:T2"] is Action.SKIP  # e-mail taken by another EduRPG user
    assert actions["Enrollment:U1-S1"] is Action.CREATE
    skipped = {record.key: record.category for record in plan.skipped}
    assert skipped == {"Class:C3": "malformed", "User:U3": "depends_on_skipped", "User:T2": "email_in_use"}
    subject_ref = entities.desired["Subject:S1"][REF]["metadata"]
    assert subject_ref == {"bakalariSubjectId": "S1", "bakalariSubjectCode": "M"}  # EduRPG's keys
    assert entities.desired["User:T1"]["email"] == "novak@s.cz"
    assert entities.desired["User:U1"]["classId"] == entities.desired["Class:C1"]["id"]
    assert "email" not in entities.desired["User:U1"]  # an existing user's e-mail is EduRPG's
    enrollment = entities.desired["Enrollment:U1-S1"]
    assert (
        enrollment["userId"] == "u1"
        and enrollment[REF]["metadata"]["subjectId"] == entities.desired["Subject:S1"]["id"]
    )
    assert entities.depends_on["Enrollment:U1-S1"] == ["User:U1", "Subject:S1", "Class:C1"]
    keys = list(entities.desired)
    assert keys == sorted(
        keys, key=lambda k: ("Class", "Subject", "User", "Enrollment").index(k.split(":")[0])
    )


def test_unchanged_state_plans_nothing_and_vanished_refs_are_found() -> None:
    school = school_reading()
    students = [student("U1", ClassInfo("C1", "1.A", "1. A"), ["S1"])]
    first = build_desired(school, students, EduRpgSnapshot(), counter_ids())
    # EduRPG after the first run wrote everything, plus a ref of a subject Bakaláři no longer has.
    snapshot = EduRpgSnapshot()
    for key, desired in first.desired.items():
        kind = key.split(":")[0]
        row = {k: v for k, v in desired.items() if not k.startswith("ref")}
        if kind == "Class":
            snapshot.classes[row["id"]] = row
        elif kind == "Subject":
            snapshot.subjects[row["id"]] = row
        elif kind == "User":
            snapshot.users[row["id"]] = {"email": f"{row['id']}@x", "classId": None, **row}
        else:
            snapshot.enrollments[row["userId"], row["subjectId"]] = row
        external_id = f"{row['userId']}-{row['subjectId']}" if kind == "Enrollment" else key.split(":")[1]
        snapshot.refs[kind.lower(), external_id] = {
            "type": kind.lower(),
            "externalId": external_id,
            "internalId": row["id"],
            "metadata": desired[REF]["metadata"],
        }
    snapshot.subjects["old"] = {"id": "old", "name": "Latina", "code": "LA"}
    snapshot.refs["subject", "S9"] = {
        "type": "subject",
        "externalId": "S9",
        "internalId": "old",
        "metadata": {},
    }
    snapshot.reindex()
    second = build_desired(school, students, snapshot, counter_ids())
    plan = plan_changes("t", second.desired, second.current, second.skips)
    assert plan.to_write == []
    assert [(v.key, v.name) for v in second.vanished] == [("Subject:S9", "Latina")]


@pytest.mark.parametrize(
    ("abbrev", "expected"),
    [
        ("2.B", (2, False)),
        ("X.A", (1, True)),
        ("Přípravka", (1, True)),
        ("", (1, True)),
        ("1234567890.A", (None, False)),
    ],
)
def test_edurpg_grade_defaults_to_one_without_leading_digits(abbrev: str, expected: tuple) -> None:
    assert edurpg_grade(abbrev) == expected


def test_uid_prefix_and_bare_id() -> None:
    assert uid_prefix("1234/U1AB") == "1234" and uid_prefix("U1AB") is None and uid_prefix(None) is None
    assert bare_id("1234/U1AB") == bare_id("U1AB") == "U1AB"


def teacher_snapshot(bakalari_id: str) -> EduRpgSnapshot:
    return EduRpgSnapshot(
        users={
            "t1": {
                "id": "t1",
                "email": "novak@s.cz",
                "name": "Mgr. Novák",
                "role": "TEACHER",
                "classId": None,
                "bakalariId": bakalari_id,
            }
        }
    )


@pytest.mark.parametrize("stored", ["T1", "1234/T1", "9999/T1"])
def test_a_teacher_is_adopted_with_or_without_a_uid_prefix(stored: str) -> None:
    """EduRPG's login stores ``UserUID`` (maybe ``prefix/T1``); the timetable says ``T1``: one user, not two."""
    school = school_reading()
    school.uid_prefix = "1234"
    entities = build_desired(school, [], teacher_snapshot(stored), counter_ids())
    assert entities.current["User:T1"]["id"] == "t1"
    desired = entities.desired["User:T1"]
    assert desired["bakalariId"] == "1234/T1"  # the form this school's login stores and will look up


def test_new_teachers_get_the_login_form_of_their_id() -> None:
    school = school_reading()
    school.uid_prefix = "1234"
    entities = build_desired(school, [], EduRpgSnapshot(), counter_ids())
    assert entities.desired["User:T1"]["bakalariId"] == "1234/T1"
    assert entities.desired["User:T1"][REF]["metadata"]["bakalariUserId"] == "T1"
    school.uid_prefix = None
    assert build_desired(school, [], EduRpgSnapshot(), counter_ids()).desired["User:T1"]["bakalariId"] == "T1"
