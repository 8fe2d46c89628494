"""EduRPG's database for tests, the demo and the benchmark: the Prisma schema, seeded as students leave it.

On PostgreSQL the tables are created with the SQL Prisma's migration generates for ``prisma/schema.prisma``
(SPSULProjects/EduRPG): quoted identifiers, enum types ``"UserRole"`` and ``"LogLevel"``, ``TIMESTAMP(3)``,
``"createdAt" DEFAULT CURRENT_TIMESTAMP`` and ``"updatedAt"`` without a default (Prisma's client fills it),
``JSONB`` metadata, the unique indexes, and foreign keys with ``ON DELETE CASCADE``. Besides the tables the
sync writes, the game tables ``Job``, ``XPAudit`` and ``MoneyTx`` hang off ``"User"``/``"Subject"`` with
cascades, so tests can show that the sync never deletes anything that would take a student's game history
with it. On SQLite (the demo) the same tables are created with SQLite's types and CHECK constraints for enums.

``seed_edurpg`` writes the state EduRPG is in after the sample school's students logged in: one ``"User"``
row per student with ``"bakalariId"`` and their Bakaláři refresh token in ``"bakalariToken"``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    SampleSchool,
    generate_school,
)
from devkit.sandbox.server import DemoSetup, SandboxProcess
from sync_pipelines.core.database import create_database_engine, is_postgresql
from sync_pipelines.defs.bakalari.edurpg import SETTING, klass, new_id, system_log, user, utc_now

INSERT_CHUNK = 5_000
DEMO_SEED = 7  # the seed ``python -m devkit.sandbox bakalari`` uses by default

# What ``prisma migrate`` generates for the schema's tables the sync touches, plus three game tables.
POSTGRESQL_DDL = [
    """CREATE TYPE "public"."UserRole" AS ENUM ('OPERATOR', 'TEACHER', 'STUDENT')""",
    """CREATE TYPE "public"."JobStatus" AS ENUM ('OPEN', 'IN_PROGRESS', 'CLOSED', 'CANCELLED')""",
    """CREATE TYPE "public"."MoneyTxType" AS ENUM ('EARNED', 'SPENT', 'REFUND')""",
    """CREATE TYPE "public"."LogLevel" AS ENUM ('DEBUG', 'INFO', 'WARN', 'ERROR')""",
    """CREATE TABLE "public"."User" (
    "id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "role" "public"."UserRole" NOT NULL DEFAULT 'STUDENT',
    "classId" TEXT,
    "bakalariId" TEXT,
    "bakalariToken" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."Class" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "grade" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Class_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."Subject" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "code" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Subject_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."Enrollment" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "subjectId" TEXT NOT NULL,
    "classId" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Enrollment_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."Job" (
    "id" TEXT NOT NULL,
    "title" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "subjectId" TEXT NOT NULL,
    "teacherId" TEXT NOT NULL,
    "xpReward" INTEGER NOT NULL,
    "moneyReward" INTEGER NOT NULL,
    "status" "public"."JobStatus" NOT NULL DEFAULT 'OPEN',
    "maxStudents" INTEGER NOT NULL DEFAULT 1,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "closedAt" TIMESTAMP(3),

    CONSTRAINT "Job_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."XPAudit" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "amount" INTEGER NOT NULL,
    "reason" TEXT NOT NULL,
    "requestId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "XPAudit_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."MoneyTx" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "amount" INTEGER NOT NULL,
    "type" "public"."MoneyTxType" NOT NULL,
    "reason" TEXT NOT NULL,
    "requestId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "MoneyTx_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."SystemLog" (
    "id" TEXT NOT NULL,
    "level" "public"."LogLevel" NOT NULL DEFAULT 'INFO',
    "message" TEXT NOT NULL,
    "userId" TEXT,
    "requestId" TEXT,
    "metadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "SystemLog_pkey" PRIMARY KEY ("id")
)""",
    """CREATE TABLE "public"."ExternalRef" (
    "id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "externalId" TEXT NOT NULL,
    "internalId" TEXT NOT NULL,
    "metadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ExternalRef_pkey" PRIMARY KEY ("id")
)""",
    """CREATE UNIQUE INDEX "User_email_key" ON "public"."User"("email")""",
    """CREATE UNIQUE INDEX "User_bakalariId_key" ON "public"."User"("bakalariId")""",
    """CREATE INDEX "User_role_idx" ON "public"."User"("role")""",
    """CREATE INDEX "User_classId_idx" ON "public"."User"("classId")""",
    """CREATE INDEX "User_bakalariId_idx" ON "public"."User"("bakalariId")""",
    """CREATE INDEX "Class_grade_idx" ON "public"."Class"("grade")""",
    """CREATE UNIQUE INDEX "Subject_code_key" ON "public"."Subject"("code")""",
    """CREATE INDEX "Enrollment_userId_idx" ON "public"."Enrollment"("userId")""",
    """CREATE INDEX "Enrollment_subjectId_idx" ON "public"."Enrollment"("subjectId")""",
    """CREATE INDEX "Enrollment_classId_idx" ON "public"."Enrollment"("classId")""",
    """CREATE UNIQUE INDEX "Enrollment_userId_subjectId_key" ON "public"."Enrollment"("userId", "subjectId")""",
    """CREATE INDEX "Job_subjectId_idx" ON "public"."Job"("subjectId")""",
    """CREATE INDEX "Job_teacherId_idx" ON "public"."Job"("teacherId")""",
    """CREATE INDEX "Job_status_idx" ON "public"."Job"("status")""",
    """CREATE INDEX "XPAudit_userId_idx" ON "public"."XPAudit"("userId")""",
    """CREATE INDEX "XPAudit_requestId_idx" ON "public"."XPAudit"("requestId")""",
    """CREATE INDEX "MoneyTx_userId_idx" ON "public"."MoneyTx"("userId")""",
    """CREATE INDEX "MoneyTx_type_idx" ON "public"."MoneyTx"("type")""",
    """CREATE INDEX "MoneyTx_requestId_idx" ON "public"."MoneyTx"("requestId")""",
    """CREATE INDEX "SystemLog_level_idx" ON "public"."SystemLog"("level")""",
    """CREATE INDEX "SystemLog_userId_idx" ON "public"."SystemLog"("userId")""",
    """CREATE INDEX "SystemLog_requestId_idx" ON "public"."SystemLog"("requestId")""",
    """CREATE INDEX "SystemLog_createdAt_idx" ON "public"."SystemLog"("createdAt")""",
    """CREATE INDEX "ExternalRef_type_idx" ON "public"."ExternalRef"("type")""",
    """CREATE INDEX "ExternalRef_internalId_idx" ON "public"."ExternalRef"("internalId")""",
    """CREATE UNIQUE INDEX "ExternalRef_type_externalId_key" ON "public"."ExternalRef"("type", "externalId")""",
    """ALTER TABLE "public"."User" ADD CONSTRAINT "User_classId_fkey" FOREIGN KEY ("classId") REFERENCES "public"."Class"("id") ON DELETE SET NULL ON UPDATE CASCADE""",
    """ALTER TABLE "public"."Enrollment" ADD CONSTRAINT "Enrollment_userId_fkey" FOREIGN KEY ("userId") REFERENCES "public"."User"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."Enrollment" ADD CONSTRAINT "Enrollment_subjectId_fkey" FOREIGN KEY ("subjectId") REFERENCES "public"."Subject"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."Enrollment" ADD CONSTRAINT "Enrollment_classId_fkey" FOREIGN KEY ("classId") REFERENCES "public"."Class"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."Job" ADD CONSTRAINT "Job_subjectId_fkey" FOREIGN KEY ("subjectId") REFERENCES "public"."Subject"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."Job" ADD CONSTRAINT "Job_teacherId_fkey" FOREIGN KEY ("teacherId") REFERENCES "public"."User"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."XPAudit" ADD CONSTRAINT "XPAudit_userId_fkey" FOREIGN KEY ("userId") REFERENCES "public"."User"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."MoneyTx" ADD CONSTRAINT "MoneyTx_userId_fkey" FOREIGN KEY ("userId") REFERENCES "public"."User"("id") ON DELETE CASCADE ON UPDATE CASCADE""",
    """ALTER TABLE "public"."SystemLog" ADD CONSTRAINT "SystemLog_userId_fkey" FOREIGN KEY ("userId") REFERENCES "public"."User"("id") ON DELETE SET NULL ON UPDATE CASCADE""",
]

POSTGRESQL_DROP = [
    'DROP TABLE IF EXISTS "public"."ExternalRef", "public"."SystemLog", "public"."MoneyTx", "public"."XPAudit", '
    '"public"."Job", "public"."Enrollment", "public"."Subject", "public"."User", "public"."Class" CASCADE',
    'DROP TYPE IF EXISTS "public"."UserRole", "public"."JobStatus", "public"."MoneyTxType", "public"."LogLevel"',
]

_SQLITE_TIMESTAMPS = """"createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL"""

SQLITE_DDL = [
    """CREATE TABLE "Class" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "grade" INTEGER NOT NULL,
    """
    + _SQLITE_TIMESTAMPS
    + ")",
    """CREATE TABLE "User" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "email" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL DEFAULT 'STUDENT' CHECK ("role" IN ('OPERATOR', 'TEACHER', 'STUDENT')),
    "classId" TEXT REFERENCES "Class" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    "bakalariId" TEXT,
    "bakalariToken" TEXT,
    """
    + _SQLITE_TIMESTAMPS
    + ")",
    """CREATE TABLE "Subject" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "code" TEXT NOT NULL,
    """
    + _SQLITE_TIMESTAMPS
    + ")",
    """CREATE TABLE "Enrollment" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "userId" TEXT NOT NULL REFERENCES "User" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    "subjectId" TEXT NOT NULL REFERENCES "Subject" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    "classId" TEXT NOT NULL REFERENCES "Class" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    """
    + _SQLITE_TIMESTAMPS
    + ")",
    """CREATE TABLE "XPAudit" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "userId" TEXT NOT NULL REFERENCES "User" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    "amount" INTEGER NOT NULL,
    "reason" TEXT NOT NULL,
    "requestId" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    """CREATE TABLE "SystemLog" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "level" TEXT NOT NULL DEFAULT 'INFO' CHECK ("level" IN ('DEBUG', 'INFO', 'WARN', 'ERROR')),
    "message" TEXT NOT NULL,
    "userId" TEXT REFERENCES "User" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    "requestId" TEXT,
    "metadata" JSON,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    """CREATE TABLE "ExternalRef" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "type" TEXT NOT NULL,
    "externalId" TEXT NOT NULL,
    "internalId" TEXT NOT NULL,
    "metadata" JSON,
    """
    + _SQLITE_TIMESTAMPS
    + ")",
    """CREATE UNIQUE INDEX "User_email_key" ON "User"("email")""",
    """CREATE UNIQUE INDEX "User_bakalariId_key" ON "User"("bakalariId")""",
    """CREATE UNIQUE INDEX "Subject_code_key" ON "Subject"("code")""",
    """CREATE UNIQUE INDEX "Enrollment_userId_subjectId_key" ON "Enrollment"("userId", "subjectId")""",
    """CREATE INDEX "XPAudit_userId_idx" ON "XPAudit"("userId")""",
    """CREATE INDEX "SystemLog_createdAt_idx" ON "SystemLog"("createdAt")""",
    """CREATE UNIQUE INDEX "ExternalRef_type_externalId_key" ON "ExternalRef"("type", "externalId")""",
]

SQLITE_DROP = [
    f'DROP TABLE IF EXISTS "{name}"'
    for name in ("ExternalRef", "SystemLog", "XPAudit", "Enrollment", "Subject", "User", "Class")
]

xp_audit = sa.Table(
    "XPAudit",
    sa.MetaData(),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("userId", sa.Text, nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


def create_schema(url: str) -> Engine:
    """EduRPG's tables at ``url``, replacing any that exist (PostgreSQL: Prisma's SQL; SQLite: its variant)."""
    engine = create_database_engine(url, SETTING)
    drop, create = (POSTGRESQL_DROP, POSTGRESQL_DDL) if is_postgresql(engine) else (SQLITE_DROP, SQLITE_DDL)
    with engine.begin() as connection:
        for statement in [*drop, *create]:
            connection.exec_driver_sql(statement)
    return engine


def seed_edurpg(
    url: str, school: SampleSchool, *, login_classes: bool = False, xp_per_student: int = 1
) -> Engine:
    """Create the schema and the rows EduRPG holds once the school's students have logged in.

    Each student gets a ``"User"`` row (``email`` ``<bakalariId>@bakalari.local``, role STUDENT) with their
    refresh token in ``"bakalariToken"`` and ``xp_per_student`` ``"XPAudit"`` rows of game history. With
    ``login_classes`` the students' classes exist too, as EduRPG's login creates them (a ``"Class"`` named by
    the abbreviation, no ``"ExternalRef"``), and students point at them.
    """
    engine = create_schema(url)
    now = utc_now()
    class_ids: dict[str, str] = {}
    if login_classes:
        class_rows = []
        for cls in school.classes:
            class_ids[cls.id] = new_id()
            class_rows.append(
                {"id": class_ids[cls.id], "name": cls.abbrev, "grade": cls.grade, "updatedAt": now}
            )
        with engine.begin() as connection:
            connection.execute(sa.insert(klass), class_rows)
    users, history = [], []
    for student in school.students:
        user_id = new_id()
        users.append(
            {
                "id": user_id,
                "email": f"{student.user_id}@bakalari.local",
                "name": student.full_name,
                "role": "STUDENT",
                "classId": class_ids.get(student.class_id),
                "bakalariId": student.user_id,
                "bakalariToken": student.refresh_token,
                "updatedAt": now,
            }
        )
        history += [
            {"id": new_id(), "userId": user_id, "amount": 10 * (n + 1), "reason": "Úkol odevzdán"}
            for n in range(xp_per_student)
        ]
    with engine.begin() as connection:
        for table, rows in ((user, users), (xp_audit, history)):
            for start in range(0, len(rows), INSERT_CHUNK):
                connection.execute(sa.insert(table), rows[start : start + INSERT_CHUNK])
    return engine


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per EduRPG table, for tests and the benchmark."""
    names = ["Class", "Subject", "User", "Enrollment", "ExternalRef", "SystemLog", "XPAudit"]
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one() for name in names
        }


def system_log_messages(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(system_log.c.level, system_log.c.message).order_by(system_log.c.createdAt)
        )
        return [(row.level, row.message) for row in rows]


def demo_setup(home: Path, size: int) -> DemoSetup:
    """A Bakaláři sandbox (started) holding the sample school and a SQLite EduRPG whose students logged in with it."""
    edurpg_url = f"sqlite:///{home / 'edurpg.sqlite'}"
    seed_edurpg(edurpg_url, generate_school(size, DEMO_SEED), login_classes=True)
    bakalari = SandboxProcess(
        "bakalari", ["--size", str(size), "--seed", str(DEMO_SEED), "--latency-ms", "5"]
    )
    bakalari.start()  # before its URL goes into the environment: start() may move it to another port
    return DemoSetup(
        [bakalari],
        {
            "BAKALARI_URL": bakalari.url,
            "BAKALARI_USERNAME": OPERATOR_USERNAME,
            "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
            "EDURPG_DATABASE_URL": edurpg_url,
        },
    )
