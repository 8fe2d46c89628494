"""Resources every domain shares, and the executor of every run (the UI's asset-page runs included)."""

import dagster as dg

from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.state_resource import SyncStateResource, SyncStateTableIOManager

# SYNC_STATE_DATABASE_URL is optional, so the resource reads it at run time (see SyncStateResource.store).
sync_state = SyncStateResource()

defs = dg.Definitions(
    # Steps of a sync share one process: a process per step would cost seconds and buy nothing here. The
    # in-process executor, the run worker recording its identity first (for run_worker_watchdog).
    executor=run_worker_executor,
    resources={
        "sync_state": sync_state,
        "state_table_io_manager": SyncStateTableIOManager(state=sync_state),
    },
)
