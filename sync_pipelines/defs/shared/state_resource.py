"""The sync state database as a resource, and an IO manager that keeps asset values in it.

Asset values stored there (the validated students snapshot) can be read by a step in another process or on
another machine, unlike pickles on a local disk.
"""

import re

import dagster as dg
import pandas as pd
from pydantic import Field

from sync_pipelines.sync.state import SyncStateStore


class SyncStateResource(dg.ConfigurableResource):
    """Where the project keeps its own state (``SYNC_STATE_DATABASE_URL``; SQLite under ``$DAGSTER_HOME`` if unset)."""

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset: a SQLite file under $DAGSTER_HOME"
    )

    def store(self) -> SyncStateStore:
        return SyncStateStore.from_url(self.database_url)


def _table_name(context: dg.InputContext | dg.OutputContext) -> str:
    key = context.asset_key if context.has_asset_key else None
    name = "_".join(key.path) if key else context.name
    return "asset_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


class SyncStateTableIOManager(dg.ConfigurableIOManager):
    """Stores DataFrame asset values as tables of the sync state database (replaced on each materialization)."""

    state: dg.ResourceDependency[SyncStateResource]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        engine = self.state.store().engine
        table = _table_name(context)
        obj.to_sql(table, engine, if_exists="replace", index=False, chunksize=10_000)
        context.add_output_metadata({"stored_in_table": table, "stored_rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        engine = self.state.store().engine
        table = _table_name(context.upstream_output or context)
        return pd.read_sql_table(table, engine, dtype_backend="numpy_nullable")
