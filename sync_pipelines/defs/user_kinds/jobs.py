"""The ``user_kind_sync`` job and its undo: Portail DF -> ``users.kind``, every shard unless a partition is given."""

import dagster as dg

from sync_pipelines.core.failures import reported_as_failures
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.defs.user_kinds.source import TARGET, UserKindsSource
from sync_pipelines.sync.replay import UndoConfig, run_undo

user_kind_sync = dg.define_asset_job(
    name="user_kind_sync",
    # The asset reports per-shard materializations rather than an output, so checks in the same run would only
    # be skipped: they run in sync_checks (and from the UI) instead.
    selection=dg.AssetSelection.assets("user_kinds") - dg.AssetSelection.checks_for_assets("user_kinds"),
    tags={"sync/target": "zlv", "sync/api": "portaildf"},
    executor_def=dg.in_process_executor,
    description="Portail DF -> users.kind in the Zéro Logement Vacant database (replaces sync_user_kind.py).",
)


@dg.op(
    name="user_kinds_undo",
    out={},
    description="Reverse one run's applied changes to users.kind (a preview unless dry_run: false).",
)
@reported_as_failures
def _undo_user_kinds(
    context: dg.OpExecutionContext,
    config: UndoConfig,
    portaildf: PortailDfResource,
    zlv_database: ZlvDatabase,
    sync_state: SyncStateResource,
):
    source = UserKindsSource(portaildf, zlv_database)
    yield from run_undo(context, config, source, sync_state.store(), dg.AssetKey(TARGET))


@dg.job(
    name="user_kind_sync_undo",
    tags={"sync/target": "zlv", "sync/api": "portaildf"},
    executor_def=dg.in_process_executor,
    description="Undo a user_kind_sync run (config run_id): users.kind back to the kinds it replaced, where ZLV "
    "still holds what it wrote; a dry run unless dry_run: false.",
)
def user_kind_sync_undo():
    _undo_user_kinds()
