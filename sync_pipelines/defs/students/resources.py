"""The student information system database (``STUDENTS_DATABASE_URL``), read-only."""

import os
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from sync_pipelines.core.database import create_database_engine, require_table

SETTING = "STUDENTS_DATABASE_URL"
ACTIVE_SETTING = "STUDENTS_ACTIVE_COLUMN"
DEFAULT_ACTIVE_COLUMN = "is_active"  # the Django model's column; the older SQLite schema has none


class StudentsDatabase(dg.ConfigurableResource):
    """Reads the ``students`` table; column names are configurable for schemas that differ from both known ones.

    Only the columns the RT sync needs are read (student id, grade, RT user id, the active flag): the table's
    names and other personal fields stay in the student information system.
    """

    database_url: str = Field(description="SQLAlchemy URL of the student information system database")
    table: str = "students"
    id_column: str | None = Field(default=None, description="unset: 'student_id' if present, else 'id'")
    grade_column: str = "grade"
    rt_user_id_column: str = "rt_user_id"
    active_column: str | None = Field(
        default=None,
        description="the column saying whether a student is current (true) or left (false); unset: "
        "STUDENTS_ACTIVE_COLUMN, else 'is_active' when the table has it (without one, every row is current)",
    )

    def engine(self) -> sa.Engine:
        return create_database_engine(self.database_url, SETTING)

    def named_active_column(self) -> str | None:
        """The active column the operator named (config, else ``STUDENTS_ACTIVE_COLUMN``), or None."""
        named = self.active_column or os.environ.get(ACTIVE_SETTING, "").strip()
        return named or None

    def read_rows(self) -> list[dict[str, Any]]:
        """Every row as ``{student_id, grade, rt_user_id, active}`` with raw, unvalidated values; ``active`` is
        True for every row of a table without an active column."""
        engine = self.engine()
        required = [self.grade_column, self.rt_user_id_column]
        table = require_table(
            engine, self.table, SETTING, required + ([self.id_column] if self.id_column else [])
        )
        id_column = self.id_column or ("student_id" if "student_id" in table.c else "id")
        if id_column not in table.c:
            require_table(engine, self.table, SETTING, ["student_id"])
        named = self.named_active_column()
        if named is not None:
            require_table(engine, self.table, ACTIVE_SETTING, [named])
        active_column = named or (DEFAULT_ACTIVE_COLUMN if DEFAULT_ACTIVE_COLUMN in table.c else None)
        selected = {
            "student_id": table.c[id_column],
            "grade": table.c[self.grade_column],
            "rt_user_id": table.c[self.rt_user_id_column],
            "active": table.c[active_column] if active_column else sa.true(),
        }
        query = sa.select(*(column.label(name) for name, column in selected.items())).order_by(
            table.c[id_column]
        )
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


def students_database() -> StudentsDatabase:
    """The students table the deployment names (``STUDENTS_DATABASE_URL``), read when a run needs it."""
    return StudentsDatabase(database_url=dg.EnvVar(SETTING))
