"""The ``rt_user_sync`` job and its undo: ``students`` -> ``rt_user_custom_fields``, every shard unless a partition is given."""

from datetime import date

import dagster as dg
import pandas as pd

from sync_pipelines.defs.rt.source import TARGET, RtSource
from sync_pipelines.defs.shared.undo_job import undo_job

rt_user_sync = dg.define_asset_job(
    name="rt_user_sync",
    # rt_matches_students reads every user back from RT: it belongs to sync_checks, not to every sync run.
    selection=dg.AssetSelection.assets("students", "rt_user_custom_fields")
    - dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_matches_students")),
    tags={"sync/target": "rt", "sync/api": "rt"},
    executor_def=dg.in_process_executor,
    description="students -> RT user custom fields (Grade, Student ID).",
)


rt_user_sync_undo = undo_job(
    name="rt_user_sync_undo",
    asset=TARGET,
    tags=rt_user_sync.tags,
    resources={"request_tracker"},
    # An undo's records come from the audit log: the students table is not read.
    source=lambda resources: RtSource(pd.DataFrame(), resources.request_tracker, date.today()),
    description="Undo an rt_user_sync run (config run_id): RT fields back to the values it replaced, where RT "
    "still holds what it wrote; a dry run unless dry_run: false.",
)
