"""The library's database (``LIBRARY_DATABASE_URL``), table ``library_patrons`` (``student_id``, ``grade``)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from sync_pipelines.core.database import create_database_engine, require_table
from sync_pipelines.defs.shared.resource_bundle import ResourceBundle

SETTING = "LIBRARY_DATABASE_URL"
TABLE = "library_patrons"


class LibraryDatabase(dg.ConfigurableResource):  # type: ignore[type-arg]
    database_url: str = Field(description="SQLAlchemy URL of the library database")

    def table(self) -> tuple[sa.Engine, sa.Table]:
        engine = create_database_engine(self.database_url, SETTING)
        return engine, require_table(engine, TABLE, SETTING, ["student_id", "grade"])


@dataclass(frozen=True)
class LibraryResources(ResourceBundle):
    library_database: LibraryDatabase
