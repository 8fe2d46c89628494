"""EduRPG's database as Prisma makes it (``prisma db push``) and reads it (the generated client), from tests.

Runs ``devkit/edurpg_prisma``'s node scripts (devkit.prisma): skipped when Node.js or that folder's npm install
(devkit/install/edurpg_prisma.sh) is missing.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from devkit.prisma import PROJECT, PrismaError, build_edurpg_database, missing_reason, read_back
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.bakalari.edurpg import SETTING, enrollment, klass, new_id, subject, user, utc_now

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        missing_reason() is not None, reason=f"Prisma harness unavailable: {missing_reason()}"
    ),
]

MODELS = set(re.findall(r"^model (\w+) \{", (PROJECT / "schema.prisma").read_text(), re.MULTILINE))
SYNCED = ("User", "Class", "Subject", "Enrollment", "ExternalRef", "SystemLog")


def tables(url: str) -> set[str]:
    engine = create_database_engine(url, SETTING)
    with engine.connect() as connection:
        return set(
            connection.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalars()
        )


def iso(moment: datetime) -> str:
    """A naive UTC datetime as Prisma prints a DateTime (milliseconds, Z)."""
    return moment.isoformat(timespec="milliseconds") + "Z"


def test_schema_has_edurpgs_seventeen_models():
    assert len(MODELS) == 17 and {"User", "Class", "Subject", "Enrollment", "ExternalRef"} <= MODELS


def test_prisma_creates_every_models_table(pg_url):
    summary = build_edurpg_database(pg_url)
    assert summary["ok"] and summary["withExternalRef"]
    assert tables(pg_url) == MODELS


def test_without_external_ref_only_that_table_is_missing(pg_url):
    build_edurpg_database(pg_url, with_external_ref=False)
    assert tables(pg_url) == MODELS - {"ExternalRef"}
    # EduRPG's client still knows the model: only a query of it fails, with Prisma's P2021.
    with pytest.raises(PrismaError, match=r"ExternalRef\.findMany: P2021"):
        read_back(pg_url)
    seen = read_back(pg_url, allow_missing_external_ref=True)
    assert seen["missing"] == ["ExternalRef"]
    assert set(seen["counts"]) == MODELS - {"ExternalRef"}


def test_read_back_of_an_empty_database(pg_url):
    build_edurpg_database(pg_url)
    seen = read_back(pg_url)
    assert seen["prisma"]["engineType"] == "client"
    assert seen["counts"] == dict.fromkeys(MODELS, 0)
    assert seen["missing"] == []
    assert all(seen["rows"][model] == [] for model in SYNCED)
    assert seen["writes"]["classUpdate"] == {"skipped": "no Class rows"}
    # A row Prisma itself creates gets a cuid and both timestamps from the client.
    created = seen["writes"]["classCreate"]
    assert created["deleted"] and created["createdAt"] == created["updatedAt"]


def test_read_back_sees_rows_written_with_sql(pg_url):
    """Rows inserted the way the sync inserts them are what Prisma's client reads, relations included."""
    build_edurpg_database(pg_url)
    engine = create_database_engine(pg_url, SETTING)
    now = utc_now()
    class_id, user_id, subject_ids = new_id(), new_id(), [new_id(), new_id()]
    with engine.begin() as connection:
        connection.execute(sa.insert(klass), [{"id": class_id, "name": "4.A", "grade": 4, "updatedAt": now}])
        connection.execute(
            sa.insert(user),
            [
                {
                    "id": user_id,
                    "email": "u1@bakalari.local",
                    "name": "Nováková Jana",
                    "role": "STUDENT",
                    "classId": class_id,
                    "bakalariId": "U1",
                    "bakalariToken": "refresh-token",
                    "updatedAt": now,
                }
            ],
        )
        connection.execute(
            sa.insert(subject),
            [
                {"id": sid, "name": f"Předmět {n}", "code": f"P{n}", "updatedAt": now}
                for n, sid in enumerate(subject_ids)
            ],
        )
        connection.execute(
            sa.insert(enrollment),
            [
                {
                    "id": new_id(),
                    "userId": user_id,
                    "subjectId": subject_ids[0],
                    "classId": class_id,
                    "updatedAt": now,
                }
            ],
        )

    seen = read_back(pg_url)

    assert {model: n for model, n in seen["counts"].items() if n} == {
        "User": 1,
        "Class": 1,
        "Subject": 2,
        "Enrollment": 1,
    }
    assert seen["relations"]["usersWithClass"] == 1
    assert seen["relations"]["classUsers"] == 1
    assert seen["relations"]["userEnrollmentsResolved"] == 1
    assert seen["relations"]["subjectEnrollments"] == 1
    assert seen["lookups"] == {
        "usersByBakalariId": 1,
        "classesQueried": 1,
        "studentsInQueriedClasses": 1,
        "studentEnrollments": 1,
    }
    [row] = seen["rows"]["User"]
    assert (row["id"], row["classId"], row["bakalariId"], row["role"]) == (user_id, class_id, "U1", "STUDENT")
    # updatedAt: the sync's value, to the millisecond; createdAt: the database default, read as UTC.
    assert row["updatedAt"] == iso(now)
    created = datetime.fromisoformat(row["createdAt"].replace("Z", "+00:00"))
    assert abs(created - datetime.now(timezone.utc)) < timedelta(minutes=5), row["createdAt"]
    [klass_row] = seen["rows"]["Class"]
    assert (klass_row["name"], klass_row["grade"], klass_row["updatedAt"]) == ("4.A", 4, iso(now))

    # Prisma's update and create worked on the synced rows, and were undone.
    assert seen["writes"]["classUpdate"]["restored"] and seen["writes"]["classUpdate"]["id"] == class_id
    assert seen["writes"]["classUpdate"]["updatedAtBefore"] == iso(now)
    assert seen["writes"]["enrollmentCreate"]["deleted"]
    with engine.connect() as connection:
        name, updated = connection.execute(sa.select(klass.c.name, klass.c.updatedAt)).one()
        assert (name, updated) == ("4.A", now)
        assert connection.execute(sa.select(sa.func.count()).select_from(enrollment)).scalar_one() == 1
