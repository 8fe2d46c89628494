"""The ``user_kind_sync`` job: Portail DF -> ``users.kind``, every shard unless a partition is given."""

import dagster as dg

user_kind_sync = dg.define_asset_job(
    name="user_kind_sync",
    # The asset reports per-shard materializations rather than an output, so checks in the same run would only
    # be skipped: they run in sync_checks (and from the UI) instead.
    selection=dg.AssetSelection.assets("user_kinds") - dg.AssetSelection.checks_for_assets("user_kinds"),
    tags={"sync/target": "zlv", "sync/api": "portaildf"},
    executor_def=dg.in_process_executor,
    description="Portail DF -> users.kind in the Zéro Logement Vacant database (replaces sync_user_kind.py).",
)
