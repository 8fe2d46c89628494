"""The student information system database (``STUDENTS_DATABASE_URL``), read-only."""

from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from sync_pipelines.core.database import create_database_engine, require_table

SETTING = "STUDENTS_DATABASE_URL"


class StudentsDatabase(dg.ConfigurableResource):
    """Reads the ``students`` table; column names are configurable for schemas that differ from both known ones."""

    database_url: str = Field(description="SQLAlchemy URL of the student information system database")
    table: str = "students"
    id_column: str | None = Field(default=None, description="unset: 'student_id' if present, else 'id'")
    grade_column: str = "grade"
    rt_user_id_column: str = "rt_user_id"
    first_name_column: str | None = "first_name"
    last_name_column: str | None = "last_name"

    def engine(self) -> sa.Engine:
        return create_database_engine(self.database_url, SETTING)

    def read_rows(self) -> list[dict[str, Any]]:
        """Every row as ``{student_id, grade, rt_user_id, first_name, last_name}`` with raw, unvalidated values."""
        engine = self.engine()
        required = [self.grade_column, self.rt_user_id_column]
        table = require_table(
            engine, self.table, SETTING, required + ([self.id_column] if self.id_column else [])
        )
        id_column = self.id_column or ("student_id" if "student_id" in table.c else "id")
        if id_column not in table.c:
            require_table(engine, self.table, SETTING, ["student_id"])
        selected = {
            "student_id": table.c[id_column],
            "grade": table.c[self.grade_column],
            "rt_user_id": table.c[self.rt_user_id_column],
        }
        for name, column in (("first_name", self.first_name_column), ("last_name", self.last_name_column)):
            if column and column in table.c:
                selected[name] = table.c[column]
        query = sa.select(*(column.label(name) for name, column in selected.items())).order_by(
            table.c[id_column]
        )
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
