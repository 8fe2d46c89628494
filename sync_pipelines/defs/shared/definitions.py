"""Resources every domain shares."""

import os

import dagster as dg

from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager

# The state database URL may hold a password: it is passed as an EnvVar, so it never enters run config.
sync_state = SyncStateResource(
    database_url=dg.EnvVar("SYNC_STATE_DATABASE_URL") if os.environ.get("SYNC_STATE_DATABASE_URL") else None
)

defs = dg.Definitions(
    resources={
        "sync_state": sync_state,
        "state_table_io_manager": SyncStateTableIOManager(state=sync_state),
    }
)
