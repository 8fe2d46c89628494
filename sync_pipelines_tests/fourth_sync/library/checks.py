"""The library's own check, run by ``sync_checks`` when the library sync is enabled."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from sync_pipelines_tests.fourth_sync.library.resources import LibraryDatabase
from sync_pipelines_tests.fourth_sync.library.source import TARGET


@dg.asset_check(asset=TARGET, blocking=True, description="Every library patron has a grade.")
def library_patrons_have_grades(library_database: LibraryDatabase) -> dg.AssetCheckResult:
    engine, patrons = library_database.table()
    with engine.connect() as connection:
        missing = connection.execute(
            sa.select(sa.func.count()).select_from(patrons).where(patrons.c.grade.is_(None))
        ).scalar_one()
    return dg.AssetCheckResult(passed=missing == 0, metadata={"without_grade": int(missing)})
