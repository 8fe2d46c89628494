"""The ``bakalari_sync`` job: Bakaláři -> EduRPG, every shard of student accounts unless a partition is given."""

import dagster as dg

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
