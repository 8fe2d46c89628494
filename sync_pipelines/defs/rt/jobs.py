"""The ``rt_user_sync`` job: ``students`` -> ``rt_user_custom_fields``, every shard unless a partition is given."""

import dagster as dg

rt_user_sync = dg.define_asset_job(
    name="rt_user_sync",
    # rt_matches_students reads every user back from RT: it belongs to sync_checks, not to every sync run.
    selection=dg.AssetSelection.assets("students", "rt_user_custom_fields")
    - dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("rt_user_custom_fields"), "rt_matches_students")),
    tags={"sync/target": "rt", "sync/api": "rt"},
    executor_def=dg.in_process_executor,
    description="students -> RT user custom fields (Grade, Student ID).",
)
