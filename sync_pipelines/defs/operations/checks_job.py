"""``sync_checks``: every asset check against the live systems, writing nothing to RT, EduRPG or ZLV (for CI)."""

import dagster as dg

sync_checks = dg.define_asset_job(
    name="sync_checks",
    selection=dg.AssetSelection.all_asset_checks(),
    executor_def=dg.in_process_executor,
    description="Every asset check against the live systems; writes nothing to RT, EduRPG or ZLV.",
)
