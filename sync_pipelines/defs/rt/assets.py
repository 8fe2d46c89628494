"""The ``rt_user_custom_fields`` asset: RT users' grade and student ID fields, kept equal to ``students``."""

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from sync_pipelines.defs.rt.resources import RequestTrackerResource
from sync_pipelines.defs.rt.source import TARGET, RtSource
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.sync import SyncRunConfig
from sync_pipelines.sync.run import run_sync


def _invalid_students(context: dg.AssetExecutionContext) -> int:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("students"))
    if event is None or event.asset_materialization is None:
        return 0
    value = event.asset_materialization.metadata.get("invalid")
    return int(value.value) if value is not None else 0


@sync_asset(
    name=TARGET,
    group="rt",
    pool="rt_api",
    fresh_within=timedelta(days=1),
    kinds={"rest"},
    description="RT users' Grade and Student ID custom fields, kept equal to the students table.",
)
def rt_user_custom_fields(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    students: pd.DataFrame,
    request_tracker: RequestTrackerResource,
    sync_state: SyncStateResource,
):
    source = RtSource(students, request_tracker, date.today(), _invalid_students(context))
    yield from run_sync(context, config, source, sync_state.store())
