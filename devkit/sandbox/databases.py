"""Sample source and target databases for the demo, the tests and the benchmarks (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from devkit.sandbox.sample_data import SampleStudent
from sync_pipelines.core.database import create_database_engine


def students_table(schema: str) -> sa.Table:
    """The ``students`` table of the student information system, in its ``legacy`` or ``django`` form."""
    metadata = sa.MetaData()
    if schema == "legacy":
        return sa.Table(
            "students",
            metadata,
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("first_name", sa.Text),
            sa.Column("last_name", sa.Text),
            sa.Column("grade", sa.Text),
            sa.Column("rt_user_id", sa.Text),
            sa.Column("device_checked_in", sa.Integer, server_default="0"),
            sa.Column("check_in_date", sa.Text),
            sa.Column("created_at", sa.Text),
            sa.Column("updated_at", sa.Text),
        )
    if schema == "django":
        return sa.Table(
            "students",
            metadata,
            sa.Column("student_id", sa.String(50), primary_key=True),
            sa.Column("first_name", sa.String(100)),
            sa.Column("last_name", sa.String(100)),
            sa.Column("username", sa.String(100)),
            sa.Column("grade", sa.Integer),
            sa.Column("advisor", sa.String(100)),
            sa.Column("rt_user_id", sa.Integer, nullable=True),
            sa.Column("is_active", sa.Boolean, server_default=sa.true()),
            sa.Column("updated_at", sa.DateTime, server_default=sa.func.now()),
        )
    raise ValueError(f"unknown students schema {schema!r}: use 'legacy' or 'django'")


def seed_students(url: str, students: Iterable[SampleStudent], schema: str = "django") -> sa.Table:
    """Create ``students`` at ``url`` (replacing it) and fill it with ``students``."""
    engine = create_database_engine(url, "STUDENTS_DATABASE_URL")
    table = students_table(schema)
    table.metadata.drop_all(engine)
    table.metadata.create_all(engine)
    if schema == "legacy":
        rows = [
            {
                "id": s.student_id,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "grade": s.grade,
                "rt_user_id": None if s.rt_user_id is None else str(s.rt_user_id),
            }
            for s in students
        ]
    else:
        rows = [
            {
                "student_id": s.student_id,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "username": s.student_id.lower(),
                "grade": 0 if s.grade == "K" else int(s.grade),
                "rt_user_id": s.rt_user_id,
            }
            for s in students
        ]
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(sa.insert(table), rows[start : start + 10_000])
    return table
