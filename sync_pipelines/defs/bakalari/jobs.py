"""The ``bakalari_sync`` job and its undo: Bakaláři -> EduRPG, every shard of student accounts unless a partition is given."""

import dagster as dg

from sync_pipelines.defs.bakalari.source import TARGET, BakalariSource
from sync_pipelines.defs.shared.undo_job import undo_job

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


bakalari_sync_undo = undo_job(
    name="bakalari_sync_undo",
    asset=TARGET,
    tags=bakalari_sync.tags,
    resources={"bakalari", "edurpg_database"},
    source=lambda resources: BakalariSource(resources.bakalari, resources.edurpg_database),
    description="Undo a bakalari_sync run (config run_id): updated fields back to what it replaced, where EduRPG "
    "still holds what it wrote; rows it created are listed for a person (EduRPG's cascades would delete game "
    "history). A dry run unless dry_run: false.",
)
