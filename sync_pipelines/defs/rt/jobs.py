"""The ``rt_user_sync`` job and its undo: ``students`` -> ``rt_user_custom_fields``, every shard unless a partition is given."""

from datetime import date

import dagster as dg
import pandas as pd

from sync_pipelines.core.failures import reported_as_failures
from sync_pipelines.defs.rt.resources import RequestTrackerResource
from sync_pipelines.defs.rt.source import TARGET, RtSource
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.sync.replay import UndoConfig, run_undo

rt_user_sync = dg.define_asset_job(
    name="rt_user_sync",
    # rt_matches_students reads every user back from RT: it belongs to sync_checks, not to every sync run.
    selection=dg.AssetSelection.assets("students", "rt_user_custom_fields")
    - dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_matches_students")),
    tags={"sync/target": "rt", "sync/api": "rt"},
    executor_def=dg.in_process_executor,
    description="students -> RT user custom fields (Grade, Student ID).",
)


@dg.op(
    name="rt_user_custom_fields_undo",
    out={},
    description="Reverse one run's applied changes to RT users' custom fields (a preview unless dry_run: false).",
)
@reported_as_failures
def _undo_rt(
    context: dg.OpExecutionContext,
    config: UndoConfig,
    request_tracker: RequestTrackerResource,
    sync_state: SyncStateResource,
):
    source = RtSource(pd.DataFrame(), request_tracker, date.today())
    yield from run_undo(context, config, source, sync_state.store(), dg.AssetKey(TARGET))


@dg.job(
    name="rt_user_sync_undo",
    tags={"sync/target": "rt", "sync/api": "rt"},
    executor_def=dg.in_process_executor,
    description="Undo an rt_user_sync run (config run_id): RT fields back to the values it replaced, where RT "
    "still holds what it wrote; a dry run unless dry_run: false.",
)
def rt_user_sync_undo():
    _undo_rt()
