"""Sample source and target databases for the demo, the tests and the benchmarks (SQLite or PostgreSQL).

The student information system's ``students`` table comes in its two known forms:

* ``legacy``: the older Flask/SQLite schema (``id TEXT`` primary key, text grades, no active flag);
* ``django``: the table the Django model's migration ``0001_initial`` makes, written here from its facts:
  ``student_id varchar(20)`` primary key, ``grade integer NOT NULL`` (kindergarten is 0), ``rt_user_id integer
  NULL`` indexed but not unique, ``is_active boolean NOT NULL``, and no database defaults at all (Django's ORM
  fills ``is_active`` and the timestamps), so every insert names every NOT NULL column.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import sqlalchemy as sa

from devkit.sandbox.sample_data import SampleStudent
from sync_pipelines.core.database import create_database_engine, is_postgresql

SAMPLE_CREATED_AT = datetime(2025, 8, 20, 7, 30, tzinfo=timezone.utc)

LEGACY_DDL = """
CREATE TABLE students (
    id TEXT PRIMARY KEY,
    first_name TEXT,
    last_name TEXT,
    grade TEXT,
    rt_user_id TEXT,
    device_checked_in INTEGER DEFAULT 0,
    check_in_date TEXT,
    created_at TEXT,
    updated_at TEXT
)
"""

DJANGO_DDL = {
    "postgresql": [
        """
        CREATE TABLE "students" (
            "student_id" varchar(20) NOT NULL PRIMARY KEY,
            "first_name" varchar(100) NOT NULL,
            "last_name" varchar(100) NOT NULL,
            "username" varchar(100) NOT NULL,
            "grade" integer NOT NULL,
            "advisor" varchar(100) NOT NULL,
            "rt_user_id" integer NULL,
            "is_active" boolean NOT NULL,
            "device_checked_in" boolean NOT NULL,
            "check_in_date" timestamp with time zone NULL,
            "created_at" timestamp with time zone NOT NULL,
            "updated_at" timestamp with time zone NOT NULL
        )
        """,
        'CREATE INDEX "students_rt_user_id_idx" ON "students" ("rt_user_id")',
        'CREATE INDEX "students_student_id_like" ON "students" ("student_id" varchar_pattern_ops)',
    ],
    "sqlite": [
        """
        CREATE TABLE "students" (
            "student_id" varchar(20) NOT NULL PRIMARY KEY,
            "first_name" varchar(100) NOT NULL,
            "last_name" varchar(100) NOT NULL,
            "username" varchar(100) NOT NULL,
            "grade" integer NOT NULL,
            "advisor" varchar(100) NOT NULL,
            "rt_user_id" integer NULL,
            "is_active" bool NOT NULL,
            "device_checked_in" bool NOT NULL,
            "check_in_date" datetime NULL,
            "created_at" datetime NOT NULL,
            "updated_at" datetime NOT NULL
        )
        """,
        'CREATE INDEX "students_rt_user_id_idx" ON "students" ("rt_user_id")',
    ],
}
SCHEMAS = ("legacy", "django")


def create_students_table(engine: sa.Engine, schema: str) -> sa.Table:
    """(Re)create ``students`` in its ``legacy`` or ``django`` form; returns the table as reflected."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown students schema {schema!r}: use 'legacy' or 'django'")
    statements = (
        [LEGACY_DDL]
        if schema == "legacy"
        else DJANGO_DDL["postgresql" if is_postgresql(engine) else "sqlite"]
    )
    with engine.begin() as connection:
        connection.exec_driver_sql('DROP TABLE IF EXISTS "students"')
        for statement in statements:
            connection.exec_driver_sql(statement)
    return sa.Table("students", sa.MetaData(), autoload_with=engine)


def student_rows(students: Iterable[SampleStudent], schema: str) -> list[dict]:
    """The rows ``students`` make in a table of ``schema``."""
    if schema == "legacy":
        return [
            {
                "id": s.student_id,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "grade": s.grade,
                "rt_user_id": None if s.rt_user_id is None else str(s.rt_user_id),
            }
            for s in students
        ]
    return [
        {
            "student_id": s.student_id,
            "first_name": s.first_name,
            "last_name": s.last_name,
            "username": s.student_id.lower(),
            "grade": 0 if s.grade == "K" else int(s.grade),
            "advisor": "",
            "rt_user_id": s.rt_user_id,
            "is_active": s.active,
            "device_checked_in": False,
            "check_in_date": None,
            "created_at": SAMPLE_CREATED_AT,
            "updated_at": SAMPLE_CREATED_AT,
        }
        for s in students
    ]


def seed_students(url: str, students: Iterable[SampleStudent], schema: str = "django") -> sa.Table:
    """Create ``students`` at ``url`` (replacing it) and fill it with ``students``."""
    engine = create_database_engine(url, "STUDENTS_DATABASE_URL")
    table = create_students_table(engine, schema)
    rows = student_rows(students, schema)
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(sa.insert(table), rows[start : start + 10_000])
    return table
