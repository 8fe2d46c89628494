"""The sync against EduRPG as it really is: a database made by Prisma from EduRPG's schema (``db push``, and as its
migrations leave it, without ``"ExternalRef"``), read back by Prisma's own client, with the tokens EduRPG's login
really stores (one-hour access tokens), on a server whose ``timezone`` is not UTC, and with EduRPG's own login
running after the sync.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.prisma import login_upsert, missing_reason, read_back
from devkit.sandbox.bakalari import BakalariSandbox, SampleSchool
from devkit.sandbox.edurpg import create_prisma_schema, seed_edurpg
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines_tests.bakalari.helpers import (
    counts,
    engine_for,
    entity_state,
    failure_message,
    observation,
    refs,
    rows,
    run_checks,
    run_sync,
    sync_resources,
    system_logs,
    tokens,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        missing_reason() is not None, reason=f"EduRPG's schema is made by Prisma: {missing_reason()}"
    ),
]

SYNCED_MODELS = ("Class", "Subject", "Enrollment", "ExternalRef")


def instant(text: str) -> datetime:
    """A DateTime as Prisma prints it (ISO, ``Z``) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def enrollments_of(school: SampleSchool, user_ids: set[str] | None = None) -> int:
    return sum(len(s.subject_ids) for s in school.students if user_ids is None or s.user_id in user_ids)


@pytest.fixture
def app(school: SampleSchool) -> BakalariSandbox:
    return BakalariSandbox(school)


@pytest.fixture
def served(app: BakalariSandbox) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(app) as server:
        yield server


# -- every model parses, every relation resolves, EduRPG's lookups and writes work --------------------------------
def test_synced_database_reads_back_through_prismas_client(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    resources = sync_resources(bakalari.url, edurpg_url)
    result = run_sync(resources)
    assert result.success, failure_message(result)

    seen = read_back(edurpg_url)
    users = len(school.students) + len(school.teachers)
    enrollments = enrollments_of(school)
    assert seen["missing"] == []
    assert {m: seen["counts"][m] for m in ("Class", "Subject", "User", "Enrollment", "XPAudit")} == {
        "Class": len(school.classes),
        "Subject": len(school.subjects),
        "User": users,
        "Enrollment": enrollments,
        "XPAudit": len(school.students),
    }
    assert seen["counts"]["ExternalRef"] == len(school.classes) + len(school.subjects) + users + enrollments
    assert seen["relations"]["usersWithClass"] == seen["relations"]["classUsers"] == len(school.students)
    assert seen["relations"]["userEnrollmentsResolved"] == enrollments
    assert (
        seen["relations"]["subjectEnrollments"]
        == seen["relations"]["enrollmentsFullyResolved"]
        == enrollments
    )
    assert seen["lookups"]["usersByBakalariId"] == min(50, users)
    assert seen["lookups"]["studentsInQueriedClasses"] == len(school.students)  # < 50 classes: all queried
    assert seen["lookups"]["studentEnrollments"] > 0
    assert seen["writes"]["classUpdate"]["restored"] and seen["writes"]["classCreate"]["deleted"]
    assert seen["writes"]["enrollmentCreate"].get("deleted") or seen["writes"]["enrollmentCreate"]["skipped"]

    # EduRPG's own conventions, as Prisma reads them.
    subject_refs = [r for r in seen["rows"]["ExternalRef"] if r["type"] == "subject"]
    assert {r["metadata"]["bakalariSubjectCode"] for r in subject_refs} == {s.abbrev for s in school.subjects}
    ok = next(r for r in seen["rows"]["SystemLog"] if r["message"] == "sync_ok")
    assert ok["metadata"]["runId"] == result.run_id
    assert ok["metadata"]["result"]["classesCreated"] == len(school.classes)
    assert ok["metadata"]["result"]["success"] is True
    assert ok["metadata"]["durationMs"] == ok["metadata"]["result"]["durationMs"]

    # Prisma's update and create on synced rows were undone: the next sync finds nothing to write.
    before = entity_state(engine)
    again = run_sync(resources)
    assert again.success and observation(again)["rows_written"] == 0
    assert entity_state(engine) == before


# -- "ExternalRef": EduRPG's migrations never create it ----------------------------------------------------------
def external_ref_shape(url: str) -> tuple:
    with engine_for(url).connect() as connection:
        columns = connection.execute(
            sa.text(
                "SELECT column_name, data_type, is_nullable, column_default, datetime_precision "
                "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'ExternalRef' "
                "ORDER BY ordinal_position"
            )
        ).all()
        indexes = connection.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'public' AND tablename = 'ExternalRef' ORDER BY indexname"
            )
        ).all()
        constraints = connection.execute(
            sa.text(
                "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = '\"ExternalRef\"'::regclass ORDER BY conname"
            )
        ).all()
    return [tuple(c) for c in columns], [tuple(i) for i in indexes], [tuple(c) for c in constraints]


def test_migrated_database_without_external_ref_fails_naming_the_table_and_the_remedy(
    bakalari: ThreadedSandbox, pg_url: str, school: SampleSchool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDURPG_CREATE_EXTERNAL_REF", raising=False)
    seed_edurpg(pg_url, school, with_external_ref=False)  # as `prisma migrate deploy` leaves EduRPG
    result = run_sync(sync_resources(bakalari.url, pg_url))
    assert not result.success
    message = failure_message(result)
    assert 'no table "ExternalRef"' in message
    assert "migrations" in message and "do not create it" in message
    assert "prisma db push" in message and 'CREATE TABLE "ExternalRef"' in message
    assert "EDURPG_CREATE_EXTERNAL_REF=true" in message
    assert "is EduRPG's Prisma schema migrated?" not in message
    assert bakalari.stats()["total_requests"] == 0


def test_opt_in_creates_external_ref_exactly_as_prisma_does(
    bakalari: ThreadedSandbox,
    make_pg_url,
    school: SampleSchool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrated, pushed = make_pg_url(), make_pg_url()
    seed_edurpg(migrated, school, with_external_ref=False)
    create_prisma_schema(pushed, with_external_ref=True)
    monkeypatch.setenv("EDURPG_CREATE_EXTERNAL_REF", "true")
    result = run_sync(sync_resources(bakalari.url, migrated))
    assert result.success, failure_message(result)
    assert external_ref_shape(migrated) == external_ref_shape(pushed)
    seen = read_back(migrated)  # Prisma's client reads the table the sync made, with no allowance
    assert (
        seen["missing"] == [] and seen["counts"]["ExternalRef"] == counts(engine_for(migrated))["ExternalRef"]
    )
    assert seen["counts"]["Enrollment"] == enrollments_of(school)


# -- timestamps as Prisma writes them, on a server whose timezone is not UTC -------------------------------------
def test_created_rows_have_equal_utc_timestamps_on_a_non_utc_server(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    with engine.connect() as connection:
        name = connection.execute(sa.text("SELECT current_database()")).scalar_one()
        connection.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Europe/Prague'"))
        connection.commit()
    engine.dispose()  # new sessions pick the database's timezone up
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW timezone")).scalar_one() == "Europe/Prague"
        local = connection.execute(sa.text("SELECT CURRENT_TIMESTAMP::timestamp(3)")).scalar_one()
    # What the column default would have stored: Prague's wall clock, an hour or two off the UTC instant.
    assert abs(local - datetime.now(timezone.utc).replace(tzinfo=None)) > timedelta(minutes=50)

    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = run_sync(sync_resources(bakalari.url, edurpg_url))
    finished = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert result.success, failure_message(result)

    seen = read_back(edurpg_url)
    created = [row for model in SYNCED_MODELS for row in seen["rows"][model]]
    teacher_ids = {t.id for t in school.teachers}
    created += [row for row in seen["rows"]["User"] if row["bakalariId"] in teacher_ids]
    assert len(created) == sum(seen["counts"][m] for m in SYNCED_MODELS) + len(school.teachers)
    for row in created:
        assert row["createdAt"] == row["updatedAt"], row
        assert started <= instant(row["createdAt"]) <= finished, row
    for row in seen["rows"]["SystemLog"]:
        assert started <= instant(row["createdAt"]) <= finished, row
    # Students were created by EduRPG's login before the run and updated by it: created first, then updated.
    students = [row for row in seen["rows"]["User"] if row["role"] == "STUDENT"]
    assert students and all(instant(r["createdAt"]) <= instant(r["updatedAt"]) <= finished for r in students)


# -- the tokens EduRPG's login stores: one-hour access tokens ---------------------------------------------------
def test_students_with_stored_access_tokens_are_synced_until_they_expire(
    app: BakalariSandbox,
    served: ThreadedSandbox,
    pg_url: str,
    school: SampleSchool,
    ephemeral_instance: dg.DagsterInstance,
) -> None:
    students = school.students
    expired = {s.user_id for s in students[:3]}  # logged in two hours ago: EduRPG's token is dead
    revoked = students[3].user_id  # exp still ahead, but Bakaláři no longer accepts it
    with_refresh = {s.user_id for s in students[4:6]}  # EduRPG with the one-line fix stores refresh tokens
    stored = {}
    for student in students:
        if student.user_id in with_refresh:
            stored[student.user_id] = student.refresh_token
        elif student.user_id in expired:
            stored[student.user_id] = app.login_access_token(student.user_id, age_seconds=2 * 3600)
        else:
            stored[student.user_id] = app.login_access_token(student.user_id, age_seconds=600)
    app.apply_state_change({"action": "expire_access_tokens", "user_id": revoked})
    engine = seed_edurpg(pg_url, school, tokens=stored)
    instance = ephemeral_instance

    result = run_sync(sync_resources(served.url, pg_url), instance=instance)
    assert result.success, failure_message(result)  # students needing a login are not an error
    metadata = observation(result)
    fresh = len(students) - len(expired) - 1 - len(with_refresh)
    assert metadata["students_read"] == fresh + len(with_refresh)
    assert metadata["students_read_with_access_token"] == fresh
    assert metadata["students_with_access_token"] == fresh + len(expired) + 1
    assert metadata["students_needing_login"] == metadata["skipped_needs_login"] == len(expired) + 1
    assert set(metadata["needs_login_students"]) == expired | {revoked}
    assert metadata["token_rotations"] == len(with_refresh)
    assert served.state()["logins"]["refresh_token"] == len(
        with_refresh
    )  # no grant tried with an access token
    plan = metadata["plan"]
    assert all(
        f"| User:{user_id} | needs_login | the stored Bakaláři access token expired" in plan
        for user_id in expired
    )
    assert f"| User:{revoked} | needs_login | Bakaláři refused the stored access token" in plan

    synced = {s.user_id for s in students} - expired - {revoked}
    assert set(refs(engine, "user")) - {t.id for t in school.teachers} == synced
    assert counts(engine)["Enrollment"] == enrollments_of(school, synced)
    after = tokens(engine)
    assert {u: after[u] for u in set(stored) - with_refresh} == {
        u: stored[u] for u in set(stored) - with_refresh
    }
    ok = system_logs(engine)[-1]
    assert ok["message"] == "sync_ok" and ok["metadata"]["studentsNeedingLogin"] == len(expired) + 1

    recorded = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    recorded += "\n".join(str(row["metadata"]) for row in system_logs(engine))
    recorded += "\n".join(str(value) for value in metadata.values())
    assert not [t for t in [*stored.values(), *after.values()] if t and t in recorded]

    seen = read_back(pg_url)
    assert seen["relations"]["usersWithClass"] == len(synced)
    assert seen["relations"]["userEnrollmentsResolved"] == enrollments_of(school, synced)

    checks = run_checks(sync_resources(served.url, pg_url), instance)
    assert (
        checks["bakalari_students_needing_login"].metadata["students_needing_login"].value == len(expired) + 1
    )


def test_every_recently_logged_in_student_is_synced(
    app: BakalariSandbox, served: ThreadedSandbox, pg_url: str, school: SampleSchool
) -> None:
    """EduRPG as it is today: every student logged in within the hour, each with an access token stored."""
    stored = {s.user_id: app.login_access_token(s.user_id, age_seconds=1800) for s in school.students}
    engine = seed_edurpg(pg_url, school, tokens=stored, login_classes=True)
    result = run_sync(sync_resources(served.url, pg_url))
    assert result.success, failure_message(result)
    metadata = observation(result)
    assert metadata["students_read"] == metadata["students_read_with_access_token"] == len(school.students)
    assert metadata["students_needing_login"] == 0 and metadata["token_rotations"] == 0
    assert counts(engine)["Enrollment"] == enrollments_of(school)
    assert {user_id: tokens(engine)[user_id] for user_id in stored} == stored  # used as stored
    seen = read_back(pg_url)
    assert seen["relations"]["usersWithClass"] == len(school.students)


# -- classes without leading digits ------------------------------------------------------------------------------
def test_a_class_without_leading_digits_gets_grade_one_and_its_students(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    odd = school.classes[0]
    bakalari.change_state({"action": "rename_class", "class_id": odd.id, "abbrev": "X.A", "name": "X.A"})
    result = run_sync(sync_resources(bakalari.url, edurpg_url))
    assert result.success, failure_message(result)
    metadata = observation(result)
    assert metadata["grade_defaulted"] == 1 and metadata["grade_defaulted_classes"] == ["X.A"]
    assert metadata.get("skipped_malformed", 0) == 0
    class_id = refs(engine, "class")[odd.id]["internalId"]
    [row] = [r for r in rows(engine, "Class") if r["id"] == class_id]
    assert (row["name"], row["grade"]) == ("X.A", 1)
    members = {s.user_id for s in school.students if s.class_id == odd.id}
    users = {r["bakalariId"]: r for r in rows(engine, "User")}
    assert members and all(users[m]["classId"] == class_id for m in members)
    assert members <= set(refs(engine, "user"))
    ok = system_logs(engine)[-1]
    assert ok["metadata"]["gradeDefaulted"] == ["X.A"]
    seen = read_back(edurpg_url)
    [klass] = [c for c in seen["rows"]["Class"] if c["id"] == class_id]
    assert klass["grade"] == 1
    assert seen["relations"]["usersWithClass"] == len(school.students)


# -- teachers: the bakalariId EduRPG's login stores ----------------------------------------------------------------
def test_a_teacher_logging_in_after_the_sync_finds_the_synced_row(pg_url: str, school: SampleSchool) -> None:
    prefix = "4321"
    engine = seed_edurpg(pg_url, school, bakalari_id_prefix=prefix)
    old = school.teachers[0]  # a row from before: the timetable id without the prefix
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                'INSERT INTO "User" ("id", "email", "name", "role", "bakalariId", "createdAt", "updatedAt") '
                "VALUES ('cold', 'old@school.cz', 'Old', 'TEACHER', :bak, now(), now())"
            ),
            {"bak": old.id},
        )
    with ThreadedSandbox(BakalariSandbox(school, user_uid_prefix=prefix)) as server:
        result = run_sync(sync_resources(server.url, pg_url))
    assert result.success, failure_message(result)
    assert observation(result)["students_read"] == len(school.students)
    users = {r["bakalariId"]: r for r in rows(engine, "User")}
    assert {f"{prefix}/{t.id}" for t in school.teachers} <= set(users)
    assert users[f"{prefix}/{old.id}"]["id"] == "cold"  # adopted, and its id put in the login's form
    before = counts(engine)["User"]

    # EduRPG's login (auth.ts): user.upsert by bakalariId = UserUID ("4321/<id>"), with Prisma's client.
    logins = [
        {"bakalariId": f"{prefix}/{t.id}", "name": t.name, "role": "TEACHER", "token": "t"}
        for t in school.teachers
    ]
    found = login_upsert(pg_url, logins)
    assert [f["created"] for f in found] == [False] * len(school.teachers)
    assert counts(engine)["User"] == before  # no duplicate teacher
    ids = {r["id"] for r in rows(engine, "User")}
    assert {f["id"] for f in found} <= ids
    assert read_back(pg_url)["lookups"]["usersByBakalariId"] == min(50, before)
