"""The ``user_kind_sync`` job and its undo: Portail DF -> ``users.kind``, every shard unless a partition is given."""

import dagster as dg

from sync_pipelines.defs.shared.undo_job import undo_job
from sync_pipelines.defs.user_kinds.source import TARGET, UserKindsSource

user_kind_sync = dg.define_asset_job(
    name="user_kind_sync",
    # The asset reports per-shard materializations rather than an output, so checks in the same run would only
    # be skipped: they run in sync_checks (and from the UI) instead.
    selection=dg.AssetSelection.assets("user_kinds") - dg.AssetSelection.checks_for_assets("user_kinds"),
    tags={"sync/target": "zlv", "sync/api": "portaildf"},
    executor_def=dg.in_process_executor,
    description="Portail DF -> users.kind in the Zéro Logement Vacant database (replaces sync_user_kind.py).",
)


user_kind_sync_undo = undo_job(
    name="user_kind_sync_undo",
    asset=TARGET,
    tags=user_kind_sync.tags,
    resources={"portaildf", "zlv_database"},
    source=lambda resources: UserKindsSource(resources.portaildf, resources.zlv_database),
    description="Undo a user_kind_sync run (config run_id): users.kind back to the kinds it replaced, where ZLV "
    "still holds what it wrote; a dry run unless dry_run: false.",
)
