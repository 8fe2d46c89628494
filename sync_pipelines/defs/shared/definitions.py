"""Resources every domain shares."""

import dagster as dg

from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager

# SYNC_STATE_DATABASE_URL is optional, so the resource reads it at run time (see SyncStateResource.store).
sync_state = SyncStateResource()

defs = dg.Definitions(
    resources={
        "sync_state": sync_state,
        "state_table_io_manager": SyncStateTableIOManager(state=sync_state),
    }
)
