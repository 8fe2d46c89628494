"""The ``bakalari_sync`` job and its undo: Bakaláři -> EduRPG, every shard of student accounts unless a partition is given."""

import dagster as dg

from sync_pipelines.core.failures import reported_as_failures
from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase
from sync_pipelines.defs.bakalari.source import TARGET, BakalariSource
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.sync.replay import UndoConfig, run_undo

bakalari_sync = dg.define_asset_job(
    name="bakalari_sync",
    # The asset reports per-shard materializations rather than an output, so checks in the same run would only
    # be skipped: they run in sync_checks (and from the UI) instead.
    selection=dg.AssetSelection.assets("bakalari_entities")
    - dg.AssetSelection.checks_for_assets("bakalari_entities"),
    tags={"sync/target": "edurpg", "sync/api": "bakalari"},
    executor_def=dg.in_process_executor,
    description="Bakaláři (operator and student accounts) -> EduRPG classes, subjects, users and enrollments.",
)


@dg.op(
    name="bakalari_entities_undo",
    out={},
    description="Reverse one run's updates to EduRPG's rows (a preview unless dry_run: false); rows it created "
    "are listed, not deleted.",
)
@reported_as_failures
def _undo_bakalari(
    context: dg.OpExecutionContext,
    config: UndoConfig,
    bakalari: BakalariResource,
    edurpg_database: EduRpgDatabase,
    sync_state: SyncStateResource,
):
    source = BakalariSource(bakalari, edurpg_database)
    yield from run_undo(context, config, source, sync_state.store(), dg.AssetKey(TARGET))


@dg.job(
    name="bakalari_sync_undo",
    tags={"sync/target": "edurpg", "sync/api": "bakalari"},
    executor_def=dg.in_process_executor,
    description="Undo a bakalari_sync run (config run_id): updated fields back to what it replaced, where EduRPG "
    "still holds what it wrote; rows it created are listed for a person (EduRPG's cascades would delete game "
    "history). A dry run unless dry_run: false.",
)
def bakalari_sync_undo():
    _undo_bakalari()
