"""``bakalari_entities`` end to end: the Bakaláři sandbox over HTTP and EduRPG's Prisma schema on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.sandbox.bakalari import BakalariSandbox, SampleSchool
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.server import Knobs, ThreadedSandbox
from sync_pipelines.sync.shards import shard_of
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.bakalari.helpers import (
    counts,
    engine_for,
    entity_state,
    failure_message,
    max_updated_at,
    observation,
    refs,
    rows,
    run_checks,
    run_sync,
    sandbox_tokens,
    stored_tokens_match,
    sync_resources,
    system_logs,
    tokens,
)
from sync_pipelines_tests.harness.row_errors import errors_table, records_check

pytestmark = pytest.mark.integration


def expected_enrollments(school: SampleSchool) -> int:
    return sum(len(student.subject_ids) for student in school.students)


def test_first_run_creates_every_entity_and_ref(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    result = run_sync(sync_resources(bakalari.url, edurpg_url))
    assert result.success
    found = counts(engine)
    assert found["Class"] == len(school.classes)
    assert found["Subject"] == len(school.subjects)
    assert found["User"] == len(school.students) + len(school.teachers)
    assert found["Enrollment"] == expected_enrollments(school)
    assert found["XPAudit"] == len(school.students)

    classes = {row["id"]: row for row in rows(engine, "Class")}
    class_refs = refs(engine, "class")
    for cls in school.classes:
        row = classes[class_refs[cls.id]["internalId"]]
        assert (row["name"], row["grade"]) == (cls.abbrev, cls.grade)
        assert class_refs[cls.id]["metadata"]["bakalariClassAbbrev"] == cls.abbrev
        assert row["id"].startswith("c") and len(row["id"]) == 25 and row["updatedAt"] is not None

    subjects = {row["id"]: row for row in rows(engine, "Subject")}
    subject_refs = refs(engine, "subject")
    for subject in school.subjects:
        row = subjects[subject_refs[subject.id]["internalId"]]
        assert (row["name"], row["code"]) == (subject.name, subject.abbrev)

    users = {row["bakalariId"]: row for row in rows(engine, "User")}
    user_refs = refs(engine, "user")
    teaching = {lesson.teacher_id for lesson in school.lessons}  # the operator's /subjects shows their e-mail
    for teacher in school.teachers:
        row = users[teacher.id]
        assert row["role"] == "TEACHER" and row["name"] == teacher.name
        shown = teacher.email if teacher.id in teaching else None
        assert row["email"] == (shown or f"{teacher.id}@bakalari.local")
        assert user_refs[teacher.id]["internalId"] == row["id"]
        assert user_refs[teacher.id]["metadata"]["bakalariUserType"] == "teacher"
    for student in school.students:
        row = users[student.user_id]
        assert row["role"] == "STUDENT" and row["name"] == student.full_name
        assert row["classId"] == class_refs[student.class_id]["internalId"]
        assert row["email"] == f"{student.user_id}@bakalari.local"  # kept as EduRPG's login made it
        assert user_refs[student.user_id]["internalId"] == row["id"]

    enrollment_refs = refs(engine, "enrollment")
    enrollments = rows(engine, "Enrollment")
    assert len(enrollment_refs) == len(enrollments)
    student = school.students[0]
    user_id = users[student.user_id]["id"]
    own = {row["subjectId"] for row in enrollments if row["userId"] == user_id}
    assert own == {subject_refs[subject_id]["internalId"] for subject_id in student.subject_ids}
    for row in enrollments:
        ref = enrollment_refs[f"{row['userId']}-{row['subjectId']}"]
        assert ref["internalId"] == row["id"]
        assert ref["metadata"] == {
            "userId": row["userId"],
            "subjectId": row["subjectId"],
            "classId": row["classId"],
        }

    metadata = observation(result)
    assert metadata["classesCreated"] == len(school.classes)
    assert metadata["usersCreated"] == len(school.teachers)
    assert metadata["usersUpdated"] == len(school.students)
    assert metadata["enrollmentsCreated"] == expected_enrollments(school)
    # operator: login, timetable, subjects, user (the school's UserUID form); each student: refresh, user, subjects
    assert metadata["requests_made"] == 4 + 3 * len(school.students)
    assert len(result.asset_materializations_for_node("bakalari_entities")) == 16


def test_second_run_over_unchanged_data_writes_no_rows(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    resources = sync_resources(bakalari.url, edurpg_url)
    assert run_sync(resources).success
    before, stamps, before_counts = entity_state(engine), max_updated_at(engine), counts(engine)
    second = run_sync(resources)
    assert second.success
    assert entity_state(engine) == before
    assert max_updated_at(engine) == stamps
    after_counts = counts(engine)
    assert {k: v for k, v in after_counts.items() if k != "SystemLog"} == {
        k: v for k, v in before_counts.items() if k != "SystemLog"
    }
    assert after_counts["SystemLog"] == before_counts["SystemLog"] + 2  # sync_start + sync_ok
    metadata = observation(second)
    assert metadata["planned_creates"] == metadata["planned_updates"] == 0
    assert metadata["rows_written"] == 0
    assert metadata["token_rotations"] == len(school.students)


def test_rotated_tokens_are_stored(bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool) -> None:
    engine = engine_for(edurpg_url)
    seeded = school.student_refresh_tokens()
    resources = sync_resources(bakalari.url, edurpg_url)
    for _ in range(2):
        assert run_sync(resources).success
        stored = tokens(engine)
        current = sandbox_tokens(bakalari.state())
        for student in school.students:
            assert stored[student.user_id] == current[student.user_id]
            assert stored[student.user_id] != seeded[student.user_id]
    assert bakalari.state()["logins"]["refresh_token"] == 2 * len(school.students)


def test_sync_events_carry_the_run_id(bakalari: ThreadedSandbox, edurpg_url: str) -> None:
    engine = engine_for(edurpg_url)
    result = run_sync(sync_resources(bakalari.url, edurpg_url))
    logs = system_logs(engine)
    assert [(row["level"], row["message"]) for row in logs] == [("INFO", "sync_start"), ("INFO", "sync_ok")]
    assert {row["metadata"]["runId"] for row in logs} == {result.run_id}
    assert {row["requestId"] for row in logs} == {result.run_id}
    ok = logs[1]["metadata"]
    # EduRPG's own sync_ok shape: {runId, result: SyncResult, durationMs}
    result_counts = ok["result"]
    assert (
        result_counts["classesCreated"] > 0
        and result_counts["enrollmentsCreated"] > 0
        and result_counts["usersUpdated"] > 0
    )
    assert {"classesUpdated", "usersCreated", "subjectsCreated", "durationMs"} <= set(result_counts)
    assert result_counts["success"] is True and result_counts["errors"] == []
    assert result_counts["runId"] == result.run_id and ok["durationMs"] == result_counts["durationMs"]
    assert {"startedAt", "completedAt"} <= set(result_counts)


def test_revoked_token_skips_the_student_and_deletes_nothing(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool, ephemeral_instance: dg.DagsterInstance
) -> None:
    engine = engine_for(edurpg_url)
    resources = sync_resources(bakalari.url, edurpg_url)
    instance = ephemeral_instance
    assert run_sync(resources, instance=instance).success
    gone = school.students[4]
    bakalari.change_state({"action": "revoke_refresh_token", "user_id": gone.user_id})
    before = counts(engine)
    token_before = tokens(engine)[gone.user_id]
    result = run_sync(resources, instance=instance)
    assert result.success
    metadata = observation(result)
    assert metadata["skipped_needs_login"] == 1
    assert metadata["needs_login_students"] == [gone.user_id]
    assert counts(engine)["XPAudit"] == before["XPAudit"] == len(school.students)
    assert {k: v for k, v in counts(engine).items() if k != "SystemLog"} == {
        k: v for k, v in before.items() if k != "SystemLog"
    }
    assert tokens(engine)[gone.user_id] == token_before  # left as it was, for EduRPG to replace at login
    ok = system_logs(engine)[-1]
    assert ok["message"] == "sync_ok" and ok["metadata"]["studentsNeedingLogin"] == 1
    shard = shard_of(gone.user_id)
    shard_event = next(
        m for m in result.asset_materializations_for_node("bakalari_entities") if m.partition == shard
    )
    assert shard_event.metadata["skipped_needs_login_in_shard"].value == 1

    checks = run_checks(resources, instance)
    assert checks["bakalari_students_needing_login"].passed is False
    assert checks["bakalari_students_needing_login"].severity == dg.AssetCheckSeverity.WARN
    assert checks["bakalari_students_needing_login"].metadata["students_needing_login"].value == 1
    assert checks["edurpg_external_refs_resolve"].passed
    assert checks["edurpg_unique_bakalari_ids"].passed


def test_corrupt_answers_skip_the_record_with_a_reason(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    no_class, no_digits, no_subject_id = school.students[0], school.students[1], school.students[2]
    for student, what in (
        (no_class, "no_class"),
        (no_digits, "class_abbrev_without_digits"),
        (no_subject_id, "subject_without_id"),
    ):
        bakalari.change_state({"action": "corrupt", "user_id": student.user_id, "what": what})
    resources = sync_resources(bakalari.url, edurpg_url)
    result = run_sync(resources)
    assert result.success
    metadata = observation(result)
    # A class abbreviation without digits is not malformed (EduRPG gives such a class grade 1): only two skips.
    assert metadata["skipped_malformed"] == 2
    plan = metadata["plan"]
    assert f"| User:{no_class.user_id} | malformed | /api/3/user has no Class |" in plan
    assert f"| User:{no_digits.user_id} | malformed" not in plan
    assert f"Enrollment:{no_subject_id.user_id}-(row 1) | malformed | subject row without a SubjectID" in plan
    user_refs = refs(engine, "user")
    assert no_class.user_id not in user_refs
    assert no_digits.user_id in user_refs  # synced, in its class as the operator's lookups know it
    synced = next(row for row in rows(engine, "User") if row["bakalariId"] == no_digits.user_id)
    assert synced["classId"] == refs(engine, "class")[no_digits.class_id]["internalId"]
    users = {row["bakalariId"]: row for row in rows(engine, "User")}
    partial = [
        row for row in rows(engine, "Enrollment") if row["userId"] == users[no_subject_id.user_id]["id"]
    ]
    assert len(partial) == len(no_subject_id.subject_ids) - 1
    assert counts(engine)["User"] == len(school.students) + len(school.teachers)  # nothing dropped

    bakalari.change_state({"action": "corrupt", "user_id": no_subject_id.user_id, "what": "none"})
    assert run_sync(resources).success
    complete = [
        row for row in rows(engine, "Enrollment") if row["userId"] == users[no_subject_id.user_id]["id"]
    ]
    assert len(complete) == len(no_subject_id.subject_ids)


def test_operator_login_refused_fails_at_once_naming_the_variable(
    bakalari: ThreadedSandbox, edurpg_url: str
) -> None:
    engine = engine_for(edurpg_url)
    result = run_sync(sync_resources(bakalari.url, edurpg_url, password="wrong-password"))
    assert not result.success
    message = failure_message(result)
    assert "BAKALARI_USERNAME" in message and "invalid_grant" in message
    assert "wrong-password" not in message
    assert bakalari.state()["logins"]["refresh_token"] == 0  # no student account touched
    assert bakalari.stats()["total_requests"] == 1
    logs = system_logs(engine)
    assert [(row["level"], row["message"]) for row in logs] == [
        ("INFO", "sync_start"),
        ("ERROR", "sync_fail"),
    ]
    assert "BAKALARI_USERNAME" in logs[1]["metadata"]["error"]
    assert logs[1]["metadata"]["runId"] == result.run_id
    assert counts(engine)["Class"] == 0


def test_expired_access_tokens_mid_run_refresh_once_and_continue(
    edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    # Enough latency that the reads last seconds: the watcher, polling over HTTP on a busy machine, then still
    # expires the tokens while accounts are being read.
    with ThreadedSandbox(BakalariSandbox(school, Knobs(latency_ms=40))) as server:
        stop = threading.Event()

        def expire_when_half_read() -> None:
            while not stop.is_set():
                if server.requests("GET /api/3/user") >= len(school.students) // 3:
                    server.change_state({"action": "expire_access_tokens"})
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=expire_when_half_read, daemon=True)
        watcher.start()
        try:
            result = run_sync(sync_resources(server.url, edurpg_url, max_concurrency=2))
        finally:
            stop.set()
            watcher.join(5)
        assert result.success
        metadata = observation(result)
        assert metadata["students_read"] == len(school.students)
        assert metadata.get("skipped_unauthorized", 0) == 0
        refreshes = server.state()["logins"]["refresh_token"]
        assert refreshes > len(school.students)  # the students caught mid-read refreshed once more
        assert metadata["token_rotations"] == refreshes
        assert stored_tokens_match(engine, server.state())
        assert counts(engine)["Enrollment"] == expected_enrollments(school)


def test_vanished_subject_is_reported_once_and_never_deleted(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    resources = sync_resources(bakalari.url, edurpg_url)
    assert run_sync(resources).success
    before = counts(engine)
    subject = school.subjects[3]
    bakalari.change_state({"action": "remove_subject", "subject_id": subject.id})
    result = run_sync(resources)
    assert result.success
    assert counts(engine)["Subject"] == before["Subject"]
    assert counts(engine)["Enrollment"] == before["Enrollment"]
    assert counts(engine)["XPAudit"] == before["XPAudit"]
    warnings = [row for row in system_logs(engine) if row["level"] == "WARN"]
    assert len(warnings) == 1 and warnings[0]["message"] == "sync_vanished"
    listed = warnings[0]["metadata"]["entities"]
    assert {"type": "subject", "externalId": subject.id} in [
        {"type": e["type"], "externalId": e["externalId"]} for e in listed
    ]
    takers = sum(1 for student in school.students if subject.id in student.subject_ids)
    assert Counter(e["type"] for e in listed) == {"subject": 1, "enrollment": takers}
    assert warnings[0]["metadata"]["runId"] == result.run_id
    assert refs(engine, "subject")[subject.id]["metadata"]["vanishedAt"]
    assert observation(result)["vanished"] == 1 + takers

    third = run_sync(resources)
    assert third.success
    assert len([row for row in system_logs(engine) if row["level"] == "WARN"]) == 1  # reported once

    refreshed = run_sync(resources, full_refresh=True)
    assert refreshed.success
    warnings = [row for row in system_logs(engine) if row["level"] == "WARN"]
    assert len(warnings) == 2 and warnings[-1]["metadata"]["count"] == 1 + takers


def test_dry_run_writes_no_entity(bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool) -> None:
    engine = engine_for(edurpg_url)
    before, before_counts = entity_state(engine), counts(engine)
    result = run_sync(sync_resources(bakalari.url, edurpg_url), dry_run=True)
    assert result.success
    assert entity_state(engine) == before
    assert counts(engine) == before_counts  # no SystemLog row either
    assert result.asset_materializations_for_node("bakalari_entities") == []
    metadata = observation(result)
    assert metadata["dry_run"] is True
    assert metadata["planned_creates"] == len(school.classes) + len(school.subjects) + len(
        school.teachers
    ) + expected_enrollments(school)
    # The one write a dry run makes: rotated refresh tokens, or the students would lose their credential.
    assert stored_tokens_match(engine, bakalari.state())


def test_a_failing_batch_is_rolled_back_and_only_the_bad_record_fails(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool, tmp_path
) -> None:
    """The batch's transaction is rolled back whole; its records are then written one by one, so the record
    the database refuses fails alone and its neighbours are not held back. One refused record among many is a row
    error: the run succeeds, reporting it, and the next run writes it."""
    engine = engine_for(edurpg_url)
    victim = school.students[7]
    math = next(subject for subject in school.subjects if subject.abbrev == "M")
    assert math.id in victim.subject_ids
    victim_row = next(row for row in rows(engine, "User") if row["bakalariId"] == victim.user_id)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"""CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN
                IF NEW."userId" = '{victim_row["id"]}'
                   AND NEW."subjectId" = (SELECT "id" FROM "Subject" WHERE "code" = 'M') THEN
                    RAISE EXCEPTION 'refused by the test';
                END IF; RETURN NEW; END $$ LANGUAGE plpgsql"""
        )
        connection.exec_driver_sql(
            'CREATE TRIGGER refuse_one BEFORE INSERT ON "Enrollment" FOR EACH ROW EXECUTE FUNCTION refuse_one()'
        )
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    resources = sync_resources(bakalari.url, edurpg_url, state_url=state_url)
    result = run_sync(resources, batch_size=7)
    assert result.success
    check = records_check(result, "bakalari_entities")
    assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    assert check.description.startswith(
        "1 record error(s): 1 record(s) could not be written to bakalari_entities"
    )
    audit = SyncStateStore.from_url(state_url).audit.rows("bakalari_entities", result.run_id)
    failed = {row["record_key"] for row in audit if row["status"] == "failed"}
    applied = {row["record_key"] for row in audit if row["status"] == "applied"}
    culprit = f"Enrollment:{victim.user_id}-{math.id}"
    assert failed == {culprit}
    users = {row["bakalariId"]: row for row in rows(engine, "User")}
    subjects = {ref["externalId"]: ref["internalId"] for ref in refs(engine, "subject").values()}
    present = {(row["userId"], row["subjectId"]) for row in rows(engine, "Enrollment")}
    user_refs = refs(engine, "user")

    def written(key: str) -> bool:
        kind, external = key.split(":", 1)
        if kind == "User":  # each write of a user also writes its ref
            return external in user_refs
        user, subject = external.rsplit("-", 1)
        return (users[user]["id"], subjects[subject]) in present

    assert [key for key in failed if written(key)] == []
    assert f"| {culprit} | could not be written to bakalari_entities | rolled back: " in errors_table(
        result, "bakalari_entities"
    )
    assert all(written(key) for key in applied if key.split(":")[0] in ("User", "Enrollment"))
    assert len(present) == expected_enrollments(school) - sum(k.startswith("Enrollment:") for k in failed)
    assert system_logs(engine)[-1]["message"] == "sync_fail"

    with engine.begin() as connection:
        connection.exec_driver_sql('DROP TRIGGER refuse_one ON "Enrollment"')
    assert run_sync(resources, batch_size=7).success
    assert counts(engine)["Enrollment"] == expected_enrollments(school)


def test_one_shard_reads_only_its_students(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    shard = shard_of(school.students[0].user_id)
    members = [student for student in school.students if shard_of(student.user_id) == shard]
    result = run_sync(sync_resources(bakalari.url, edurpg_url), partition=shard)
    assert result.success
    assert bakalari.state()["logins"]["refresh_token"] == len(members)
    assert [m.partition for m in result.asset_materializations_for_node("bakalari_entities")] == [shard]
    assert counts(engine)["Class"] == len(school.classes)  # the operator's entities are written every run
    assert set(refs(engine, "user")) == {t.id for t in school.teachers} | {s.user_id for s in members}


def test_limit_takes_the_first_students_by_id(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    result = run_sync(sync_resources(bakalari.url, edurpg_url), limit=5)
    assert result.success
    first = sorted(student.user_id for student in school.students)[:5]
    assert set(refs(engine, "user")) - {t.id for t in school.teachers} == set(first)
    assert observation(result)["students_read"] == 5


def test_rows_from_edurpg_logins_are_adopted_not_duplicated(
    bakalari: ThreadedSandbox, pg_url: str, school: SampleSchool
) -> None:
    engine = seed_edurpg(pg_url, school, login_classes=True)
    login_classes = {row["id"] for row in rows(engine, "Class")}
    operator_teacher = school.teachers[0]
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                'INSERT INTO "User" ("id", "email", "name", "role", "bakalariId", "updatedAt") '
                "VALUES ('cop', 'admin@school.cz', 'Admin', 'OPERATOR', :bak, now())"
            ),
            {"bak": operator_teacher.id},
        )
    result = run_sync(sync_resources(bakalari.url, pg_url))
    assert result.success
    assert {row["id"] for row in rows(engine, "Class")} == login_classes
    assert observation(result)["classesCreated"] == 0
    assert {ref["internalId"] for ref in refs(engine, "class").values()} == login_classes
    admin = next(row for row in rows(engine, "User") if row["id"] == "cop")
    assert admin["role"] == "OPERATOR"  # EduRPG's operator is never demoted to TEACHER
    assert refs(engine, "user")[operator_teacher.id]["internalId"] == "cop"


def test_secrets_stay_out_of_events_and_logs(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool, ephemeral_instance: dg.DagsterInstance
) -> None:
    engine = engine_for(edurpg_url)
    instance = ephemeral_instance
    result = run_sync(sync_resources(bakalari.url, edurpg_url), instance=instance)
    assert result.success
    recorded = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
    recorded += "\n".join(str(row["metadata"]) for row in system_logs(engine))
    assert "operator-password" not in recorded
    secrets = [*tokens(engine).values(), *school.student_refresh_tokens().values()]
    assert not [secret for secret in secrets if secret and secret in recorded]


def test_sync_on_sqlite(bakalari: ThreadedSandbox, sqlite_url: str, school: SampleSchool) -> None:
    engine = seed_edurpg(sqlite_url, school, login_classes=True)
    resources = sync_resources(bakalari.url, sqlite_url)
    assert run_sync(resources).success
    found = counts(engine)
    assert found["Enrollment"] == expected_enrollments(school)
    assert found["ExternalRef"] == (
        len(school.classes)
        + len(school.subjects)
        + len(school.teachers)
        + len(school.students)
        + found["Enrollment"]
    )
    before, stamps = entity_state(engine), max_updated_at(engine)
    assert run_sync(resources).success
    assert entity_state(engine) == before and max_updated_at(engine) == stamps
    assert stored_tokens_match(engine, bakalari.state())


def test_missing_schema_names_the_setting(bakalari: ThreadedSandbox, pg_url: str) -> None:
    result = run_sync(sync_resources(bakalari.url, pg_url))
    assert not result.success
    assert "EDURPG_DATABASE_URL: the database has no table" in failure_message(result)
    assert bakalari.stats()["total_requests"] == 0


@pytest.mark.parametrize("knob", [{"error_rate": 0.1}, {"burst_429": 4, "retry_after_seconds": 0.1}])
def test_overloaded_server_still_syncs_everything(edurpg_url: str, school: SampleSchool, knob: dict) -> None:
    engine = engine_for(edurpg_url)
    with ThreadedSandbox(BakalariSandbox(school, Knobs(seed=3, **knob))) as server:
        result = run_sync(sync_resources(server.url, edurpg_url))
        assert result.success, failure_message(result)
        assert observation(result)["retries"] > 0
        assert counts(engine)["Enrollment"] == expected_enrollments(school)


def test_changes_in_bakalari_update_only_the_changed_rows(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    engine = engine_for(edurpg_url)
    resources = sync_resources(bakalari.url, edurpg_url)
    assert run_sync(resources).success
    before = {row["id"]: row for row in rows(engine, "Class")}
    renamed, target = school.classes[0], school.classes[2]
    mover = next(student for student in school.students if student.class_id == school.classes[1].id)
    bakalari.change_state({"action": "rename_class", "class_id": renamed.id, "abbrev": "3.Z", "name": "3. Z"})
    bakalari.change_state({"action": "move_student", "user_id": mover.user_id, "class_id": target.id})
    result = run_sync(resources)
    assert result.success
    metadata = observation(result)
    assert metadata["classesUpdated"] == 1 and metadata["classesCreated"] == 0
    after = {row["id"]: row for row in rows(engine, "Class")}
    renamed_id = refs(engine, "class")[renamed.id]["internalId"]
    assert (after[renamed_id]["name"], after[renamed_id]["grade"]) == ("3.Z", 3)
    assert after[renamed_id]["updatedAt"] > before[renamed_id]["updatedAt"]
    assert all(after[i]["updatedAt"] == before[i]["updatedAt"] for i in after if i != renamed_id)
    users = {row["bakalariId"]: row for row in rows(engine, "User")}
    assert users[mover.user_id]["classId"] == refs(engine, "class")[target.id]["internalId"]
    new_subjects = set(
        next(s for s in bakalari.state()["students"] if s["id"] == mover.user_id)["subject_ids"]
    )
    dropped = set(mover.subject_ids) - new_subjects
    own = [row for row in rows(engine, "Enrollment") if row["userId"] == users[mover.user_id]["id"]]
    assert len(own) == len(set(mover.subject_ids) | new_subjects)  # dropped subjects kept, not deleted
    assert metadata["vanished"] == len(dropped)
    assert metadata["enrollmentsCreated"] == len(new_subjects - set(mover.subject_ids))
    assert metadata["usersUpdated"] == 1


def test_demo_setup_seeds_the_school_its_sandbox_serves(tmp_path) -> None:
    from devkit.sandbox.edurpg import demo_setup

    setup = demo_setup(tmp_path, 20)
    env = setup.env
    assert env["EDURPG_DATABASE_URL"].startswith("sqlite:///")
    with setup.sandboxes[0] as server:
        result = run_sync(sync_resources(env["BAKALARI_URL"], env["EDURPG_DATABASE_URL"]))
        assert result.success
        metadata = observation(result)
        assert metadata["students_read"] == 20 and metadata["students_needing_login"] == 0
        assert metadata["classesCreated"] == 0  # the demo's classes were made by "EduRPG's login"
        assert stored_tokens_match(engine_for(env["EDURPG_DATABASE_URL"]), server.state())
