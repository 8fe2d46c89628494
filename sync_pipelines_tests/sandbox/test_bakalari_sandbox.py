"""The Bakaláři sandbox over real HTTP: the sync is only as right as the shapes and token rules it is tested against."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    BakalariSandbox,
    SampleSchool,
    generate_school,
)
from devkit.sandbox.server import SandboxProcess, ThreadedSandbox

pytestmark = pytest.mark.integration

SIZE = 30
DENIED = {"Message": "Authorization has been denied for this request."}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def school() -> SampleSchool:
    return generate_school(SIZE, seed=11)


@pytest.fixture
def server(school: SampleSchool) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(BakalariSandbox(school)) as handle:
        yield handle


@pytest.fixture
def client(server: ThreadedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def password_login(
    client: httpx.Client, username: str, password: str, client_id: str = "ANDR"
) -> httpx.Response:
    return client.post(
        "/api/login",
        data={"client_id": client_id, "grant_type": "password", "username": username, "password": password},
    )


def refresh_login(client: httpx.Client, refresh_token: str) -> httpx.Response:
    return client.post(
        "/api/login",
        data={"client_id": "ANDR", "grant_type": "refresh_token", "refresh_token": refresh_token},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operator_token(client: httpx.Client) -> str:
    response = password_login(client, OPERATOR_USERNAME, OPERATOR_PASSWORD)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def student_token(client: httpx.Client, school: SampleSchool, index: int = 0) -> str:
    response = refresh_login(client, school.students[index].refresh_token)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# -- sample data -----------------------------------------------------------------------------------------------
def test_generate_school_is_deterministic_and_complete() -> None:
    school = generate_school(SIZE, seed=11)
    assert school == generate_school(SIZE, seed=11)
    assert generate_school(SIZE, seed=12).students != school.students
    assert len(school.students) == SIZE
    assert 14 <= len(school.subjects) <= 16
    assert len(school.teachers) >= 20
    emails = [teacher.email for teacher in school.teachers]
    assert None in emails and any(emails)
    assert any(re.search(r"[ěščřžýáíéůú]", subject.name) for subject in school.subjects)
    assert {cls.grade for cls in school.classes} == {1, 2, 3, 4}
    assert all(str(cls.grade) == cls.abbrev.split(".")[0] for cls in school.classes)
    tokens = school.student_refresh_tokens()
    assert len(tokens) == SIZE and len(set(tokens.values())) == SIZE
    assert tokens[school.students[3].user_id] == school.students[3].refresh_token
    subject_ids = {subject.id for subject in school.subjects}
    teacher_ids = {teacher.id for teacher in school.teachers}
    for student in school.students:
        assert re.fullmatch(r"U[0-9A-Z]{4}", student.user_id)
        assert set(student.subject_teachers) <= subject_ids
        assert set(student.subject_teachers.values()) <= teacher_ids
        assert student.subject_ids
    ids = [s.user_id for s in school.students] + [t.id for t in school.teachers] + [school.operator.user_id]
    assert len(ids) == len(set(ids))


# -- login -------------------------------------------------------------------------------------------------------
def test_operator_password_grant(client: httpx.Client, school: SampleSchool) -> None:
    response = password_login(client, OPERATOR_USERNAME, OPERATOR_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["bak:UserId"] == school.operator.user_id
    assert body["bak:ApiVersion"].startswith("3.")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["scope"] == "openid profile offline_access bakalari_api"
    assert body["access_token"] and body["refresh_token"]
    assert client.get("/api/3/user", headers=bearer(body["access_token"])).json()["UserType"] == "teacher"


def test_student_password_grant(client: httpx.Client, school: SampleSchool) -> None:
    student = school.students[5]
    body = password_login(client, student.username, student.password).json()
    assert body["bak:UserId"] == student.user_id


@pytest.mark.parametrize(
    ("username", "password"), [(OPERATOR_USERNAME, "wrong"), ("nobody", OPERATOR_PASSWORD)]
)
def test_bad_credentials_are_invalid_grant(client: httpx.Client, username: str, password: str) -> None:
    response = password_login(client, username, password)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"]


def test_malformed_login_requests(client: httpx.Client) -> None:
    missing_grant = client.post("/api/login", data={"client_id": "ANDR", "username": "x", "password": "y"})
    assert (missing_grant.status_code, missing_grant.json()["error"]) == (400, "invalid_request")
    missing_field = client.post("/api/login", data={"client_id": "ANDR", "grant_type": "refresh_token"})
    assert (missing_field.status_code, missing_field.json()["error"]) == (400, "invalid_request")
    wrong_client = password_login(client, OPERATOR_USERNAME, OPERATOR_PASSWORD, client_id="IOS")
    assert (wrong_client.status_code, wrong_client.json()["error"]) == (400, "invalid_client")


def test_refresh_tokens_rotate(client: httpx.Client, server: ThreadedSandbox, school: SampleSchool) -> None:
    student = school.students[2]
    first = refresh_login(client, student.refresh_token)
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != student.refresh_token
    assert first.json()["bak:UserId"] == student.user_id

    reused = refresh_login(client, student.refresh_token)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"

    second = refresh_login(client, rotated)
    assert second.status_code == 200
    newest = second.json()["refresh_token"]
    assert refresh_login(client, rotated).json()["error"] == "invalid_grant"
    state = server.state()
    row = next(s for s in state["students"] if s["id"] == student.user_id)
    assert row["refresh_token"] == newest
    assert row["needs_login"] is False
    assert state["logins"] == {"password": 0, "refresh_token": 2}


def test_unknown_refresh_token(client: httpx.Client) -> None:
    response = refresh_login(client, "bak-rt-made-up")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "The specified token is invalid.",
    }


# -- authorization ------------------------------------------------------------------------------------------------
def test_missing_or_bad_token_is_401(client: httpx.Client) -> None:
    for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic abc"}):
        response = client.get("/api/3/user", headers=headers)
        assert response.status_code == 401
        assert response.json() == DENIED


def test_access_token_expires_after_ttl() -> None:
    clock = FakeClock()
    school = generate_school(5)
    sandbox = BakalariSandbox(school, access_token_ttl_seconds=60, clock=clock)
    with ThreadedSandbox(sandbox) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        login = refresh_login(client, school.students[0].refresh_token).json()
        assert login["expires_in"] == 60
        assert client.get("/api/3/user", headers=bearer(login["access_token"])).status_code == 200
        clock.now += 61
        expired = client.get("/api/3/subjects", headers=bearer(login["access_token"]))
        assert expired.status_code == 401
        assert expired.json() == DENIED
        assert refresh_login(client, login["refresh_token"]).status_code == 200


def test_refresh_token_expires_after_ttl() -> None:
    clock = FakeClock()
    school = generate_school(3)
    sandbox = BakalariSandbox(school, refresh_token_ttl_seconds=100, clock=clock)
    with ThreadedSandbox(sandbox) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        clock.now += 101
        response = refresh_login(client, school.students[0].refresh_token)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert server.state()["students"][0]["needs_login"] is True


# -- operator views ------------------------------------------------------------------------------------------------
def test_operator_timetable_lists_the_whole_school(client: httpx.Client, school: SampleSchool) -> None:
    token = operator_token(client)
    for path in ("/api/3/timetable/permanent", "/api/3/timetable/actual?date=2025-10-08"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 200
        body = response.json()
        assert {c["Id"] for c in body["Classes"]} == {c.id for c in school.classes}
        assert {c["Abbrev"] for c in body["Classes"]} == {c.abbrev for c in school.classes}
        assert {g["Id"] for g in body["Groups"]} == {g.id for g in school.groups}
        assert {s["Id"] for s in body["Subjects"]} == {s.id for s in school.subjects}
        assert {t["Id"] for t in body["Teachers"]} == {t.id for t in school.teachers}
        assert set(body["Groups"][0]) == {"ClassId", "Id", "Abbrev", "Name"}
        assert [day["DayOfWeek"] for day in body["Days"]] == [1, 2, 3, 4, 5]
        atoms = [atom for day in body["Days"] for atom in day["Atoms"]]
        assert len(atoms) == sum(len(lesson.slots) for lesson in school.lessons)
        assert {"HourId", "GroupIds", "SubjectId", "TeacherId", "RoomId"} <= set(atoms[0])
        assert body["Hours"] and body["Rooms"]
    actual = client.get("/api/3/timetable/actual?date=2025-10-08", headers=bearer(token)).json()
    assert actual["Days"][0]["Date"].startswith("2025-10-06T00:00:00")


def test_actual_timetable_rejects_a_bad_date(client: httpx.Client) -> None:
    response = client.get("/api/3/timetable/actual?date=yesterday", headers=bearer(operator_token(client)))
    assert response.status_code == 400
    assert response.json()["Message"] == "The request is invalid."


def test_operator_subjects_cover_every_teacher(client: httpx.Client, school: SampleSchool) -> None:
    rows = client.get("/api/3/subjects", headers=bearer(operator_token(client))).json()["Subjects"]
    taught = {(lesson.subject_id, lesson.teacher_id) for lesson in school.lessons}
    assert {(row["SubjectID"], row["TeacherID"]) for row in rows} == taught
    assert len(rows) == len(taught)


# -- student views -------------------------------------------------------------------------------------------------
def test_student_user_record(client: httpx.Client, school: SampleSchool) -> None:
    student = school.students[7]
    cls = school.class_by_id(student.class_id)
    body = client.get("/api/3/user", headers=bearer(student_token(client, school, 7))).json()
    assert body["UserUID"] == student.user_id
    assert body["Class"] == {"Id": cls.id, "Abbrev": cls.abbrev, "Name": cls.name}
    assert body["FullName"] == student.full_name
    assert body["UserType"] == "student"
    assert body["StudyYear"] == cls.grade
    assert body["SchoolOrganizationName"] == school.name
    assert "SchoolType" in body and body["SchoolType"] is None
    assert {"UserTypeText", "EnabledModules", "SettingModules"} <= set(body)


def test_student_subjects(client: httpx.Client, school: SampleSchool) -> None:
    student = school.students[4]
    rows = client.get("/api/3/subjects", headers=bearer(student_token(client, school, 4))).json()["Subjects"]
    assert {row["SubjectID"]: row["TeacherID"] for row in rows} == student.subject_teachers
    first = rows[0]
    subject = school.subject_by_id(first["SubjectID"])
    teacher = school.teacher_by_id(first["TeacherID"])
    assert (first["SubjectName"], first["SubjectAbbrev"]) == (subject.name, subject.abbrev)
    assert (first["TeacherName"], first["TeacherAbbrev"], first["TeacherEmail"]) == (
        teacher.name,
        teacher.abbrev,
        teacher.email,
    )
    assert {"TeacherWeb", "TeacherSchoolPhone", "TeacherHomePhone", "TeacherMobilePhone"} <= set(first)


def test_student_timetable_is_their_class(client: httpx.Client, school: SampleSchool) -> None:
    student = school.students[1]
    body = client.get("/api/3/timetable/permanent", headers=bearer(student_token(client, school, 1))).json()
    assert [c["Id"] for c in body["Classes"]] == [student.class_id]
    assert {g["ClassId"] for g in body["Groups"]} == {student.class_id}
    assert {s["Id"] for s in body["Subjects"]} == set(student.subject_ids)
    own_groups = {
        g.id for g in school.groups if g.class_id == student.class_id and g.part in (0, student.group_part)
    }
    assert {gid for day in body["Days"] for atom in day["Atoms"] for gid in atom["GroupIds"]} == own_groups


def test_student_marks(client: httpx.Client, school: SampleSchool) -> None:
    student = school.students[0]
    body = client.get("/api/3/marks", headers=bearer(student_token(client, school))).json()
    assert [entry["Subject"]["Id"] for entry in body["Subjects"]] == student.subject_ids
    entry = body["Subjects"][0]
    assert entry["Marks"] and re.fullmatch(r"\d,\d\d ", entry["AverageText"])
    assert all(mark["SubjectId"] == entry["Subject"]["Id"] for mark in entry["Marks"])


# -- state changes -------------------------------------------------------------------------------------------------
def test_revoke_refresh_token_forces_a_new_login(
    client: httpx.Client, server: ThreadedSandbox, school: SampleSchool
) -> None:
    student = school.students[3]
    server.change_state({"action": "revoke_refresh_token", "user_id": student.user_id})
    response = refresh_login(client, student.refresh_token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    row = next(s for s in server.state()["students"] if s["id"] == student.user_id)
    assert row["needs_login"] is True and row["refresh_token"] is None
    assert password_login(client, student.username, student.password).status_code == 200
    row = next(s for s in server.state()["students"] if s["id"] == student.user_id)
    assert row["needs_login"] is False and row["refresh_token"]


def test_expire_access_tokens(client: httpx.Client, server: ThreadedSandbox, school: SampleSchool) -> None:
    login = refresh_login(client, school.students[0].refresh_token).json()
    operator = operator_token(client)
    server.change_state({"action": "expire_access_tokens"})
    assert client.get("/api/3/user", headers=bearer(login["access_token"])).json() == DENIED
    assert client.get("/api/3/timetable/permanent", headers=bearer(operator)).status_code == 401
    assert refresh_login(client, login["refresh_token"]).status_code == 200


def test_corrupt_answers_for_one_student(
    client: httpx.Client, server: ThreadedSandbox, school: SampleSchool
) -> None:
    bad, good = school.students[0], school.students[1]
    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "no_class"})
    assert client.get("/api/3/user", headers=bearer(student_token(client, school, 0))).json()["Class"] is None
    assert client.get("/api/3/user", headers=bearer(student_token(client, school, 1))).json()["Class"][
        "Id"
    ] == (good.class_id)

    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "none"})
    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "class_abbrev_without_digits"})
    token = refresh_login(client, server.state()["students"][0]["refresh_token"]).json()["access_token"]
    abbrev = client.get("/api/3/user", headers=bearer(token)).json()["Class"]["Abbrev"]
    assert abbrev and not re.search(r"\d", abbrev)

    server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "subject_without_id"})
    rows = client.get("/api/3/subjects", headers=bearer(token)).json()["Subjects"]
    assert sum(row["SubjectID"] is None for row in rows) == 1
    assert next(s for s in server.state()["students"] if s["id"] == bad.user_id)["corrupt"] == [
        "class_abbrev_without_digits",
        "subject_without_id",
    ]
    with pytest.raises(httpx.HTTPStatusError):
        server.change_state({"action": "corrupt", "user_id": bad.user_id, "what": "everything"})


def test_rename_class_and_remove_subject(
    client: httpx.Client, server: ThreadedSandbox, school: SampleSchool
) -> None:
    token = operator_token(client)
    cls = school.classes[0]
    before = client.get("/api/3/timetable/permanent", headers=bearer(token)).json()
    server.change_state({"action": "rename_class", "class_id": cls.id, "abbrev": "5.A", "name": "5. A"})
    subject = school.subjects[3]
    server.change_state({"action": "remove_subject", "subject_id": subject.id})
    after = client.get("/api/3/timetable/permanent", headers=bearer(token)).json()
    renamed = next(c for c in after["Classes"] if c["Id"] == cls.id)
    assert renamed != next(c for c in before["Classes"] if c["Id"] == cls.id)
    assert renamed == {"Id": cls.id, "Abbrev": "5.A", "Name": "5. A"}
    assert {g["Abbrev"] for g in after["Groups"] if g["ClassId"] == cls.id} == {"5.A", "5.A S1", "5.A S2"}
    assert subject.id not in {s["Id"] for s in after["Subjects"]}
    assert all(atom["SubjectId"] != subject.id for day in after["Days"] for atom in day["Atoms"])
    state = server.state()
    assert next(c for c in state["classes"] if c["id"] == cls.id)["grade"] == 5
    assert all(subject.id not in s["subject_ids"] for s in state["students"])


def test_add_move_and_remove_student(
    client: httpx.Client, server: ThreadedSandbox, school: SampleSchool
) -> None:
    target = school.classes[2]
    server.change_state(
        {
            "action": "add_student",
            "user_id": "UNEW1",
            "full_name": "Nová Žofie",
            "class_id": school.classes[0].id,
            "refresh_token": "bak-rt-new",
        }
    )
    token = refresh_login(client, "bak-rt-new").json()["access_token"]
    assert client.get("/api/3/user", headers=bearer(token)).json()["FullName"] == "Nová Žofie"

    server.change_state({"action": "move_student", "user_id": "UNEW1", "class_id": target.id})
    body = client.get("/api/3/user", headers=bearer(token)).json()
    assert body["Class"]["Id"] == target.id and body["StudyYear"] == target.grade
    row = next(s for s in server.state()["students"] if s["id"] == "UNEW1")
    same_class = next(s for s in school.students if s.class_id == target.id and s.group_part == 1)
    assert row["subject_teachers"] == same_class.subject_teachers

    server.change_state({"action": "remove_student", "user_id": "UNEW1"})
    assert client.get("/api/3/user", headers=bearer(token)).status_code == 401
    assert len(server.state()["students"]) == SIZE


def test_set_operator_password(client: httpx.Client, server: ThreadedSandbox) -> None:
    server.change_state({"action": "set_operator_password", "password": "new-secret"})
    assert password_login(client, OPERATOR_USERNAME, OPERATOR_PASSWORD).json()["error"] == "invalid_grant"
    assert password_login(client, OPERATOR_USERNAME, "new-secret").status_code == 200


def test_constructor_overrides_operator_credentials(school: SampleSchool) -> None:
    sandbox = BakalariSandbox(school, operator_username="rozvrhar", operator_password="tajne")
    with ThreadedSandbox(sandbox) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert password_login(client, OPERATOR_USERNAME, OPERATOR_PASSWORD).status_code == 400
        assert password_login(client, "rozvrhar", "tajne").status_code == 200
    assert school.operator.username == OPERATOR_USERNAME


def test_snapshot_shape(server: ThreadedSandbox, school: SampleSchool) -> None:
    state = server.state()
    assert state["system"] == "bakalari"
    assert [c["id"] for c in state["classes"]] == [c.id for c in school.classes]
    assert len(state["subjects"]) == len(school.subjects)
    assert len(state["teachers"]) == len(school.teachers)
    first = state["students"][0]
    assert first["refresh_token"] == school.students[0].refresh_token
    assert first["subject_ids"] == school.students[0].subject_ids
    assert first["class_id"] == school.students[0].class_id
    assert first["needs_login"] is False
    assert state["operator"]["username"] == OPERATOR_USERNAME


def test_endpoint_counters(client: httpx.Client, server: ThreadedSandbox, school: SampleSchool) -> None:
    token = operator_token(client)
    password_login(client, OPERATOR_USERNAME, "wrong")
    for _ in range(3):
        client.get("/api/3/user", headers=bearer(token))
    client.get(
        "/api/3/timetable/actual", params={"date": date(2025, 10, 8).isoformat()}, headers=bearer(token)
    )
    assert server.requests("POST /api/login") == 2
    assert server.requests("GET /api/3/user") == 3
    assert server.requests("GET /api/3/timetable/actual") == 1
    assert server.stats()["statuses"]["400"] == 1
    assert server.state()["login_failures"] == {"invalid_grant": 1}


def test_command_line_serves_the_sample_school() -> None:
    school = generate_school(12, seed=3)
    with SandboxProcess("bakalari", ["--size", "12", "--seed", "3"]) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            login = refresh_login(client, school.students[11].refresh_token)
            assert login.status_code == 200
            assert login.json()["bak:UserId"] == school.students[11].user_id
        assert len(server.state()["students"]) == 12


def test_entering_a_started_server_keeps_it_and_stops_it_once() -> None:
    server = SandboxProcess("bakalari", ["--size", "3", "--seed", "3"]).start()
    first = server._process
    url = server.url
    with server as entered:  # the demo setups hand out started servers; entering them must not start another
        assert entered._process is first and entered.url == url
        assert entered.stats()["statuses"] is not None
    assert first is not None and first.poll() is not None
