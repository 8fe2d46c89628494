"""The library sync as a source for the engine: the active students' grades desired, ``library_patrons``
current; a patron whose every field is undone to nothing is removed (it did not exist before the run)."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.outcome import Current, Desired
from sync_pipelines.sync.plan import PlannedRecord, Value
from sync_pipelines.sync.source import SyncSource
from sync_pipelines_tests.fourth_sync.library.resources import TABLE, LibraryDatabase

TARGET = TABLE


class LibrarySource(SyncSource):
    target = TARGET
    source_name = "the students table"
    count_names = ("created", "updated", "unchanged", "failed")

    def __init__(self, students: pd.DataFrame, library: LibraryDatabase) -> None:
        self.students = students
        self.engine, self.table = library.table()

    async def read_desired(self, scope: RunScope) -> Desired:
        active = self.students[self.students["active"].fillna(True).astype(bool)]
        records = {
            str(row.student_id): {"grade": str(row.grade)}
            for row in active.sort_values("student_id").itertuples()
            if self.shard_of(str(row.student_id)) in scope.shards
        }
        keys = scope.config.take(sorted(records))
        return Desired({key: records[key] for key in keys})

    async def read_current(self, keys: list[str]) -> Current:
        query = sa.select(self.table.c.student_id, self.table.c.grade).where(
            self.table.c.student_id.in_(keys)
        )
        with self.engine.connect() as connection:
            held = {str(row.student_id): {"grade": row.grade} for row in connection.execute(query)}
        values: dict[str, dict[str, Value] | None] = {key: held.get(key) for key in keys}
        return Current(values)

    def write(self, batch: list[PlannedRecord]) -> dict[str, str]:
        patrons = self.table
        with self.engine.begin() as connection:
            for record in batch:
                connection.execute(sa.delete(patrons).where(patrons.c.student_id == record.key))
                if any(value is not None for value in record.desired.values()):
                    connection.execute(sa.insert(patrons).values(student_id=record.key, **record.desired))
        return {}
