"""The ``bakalari_entities`` asset: the school's classes, subjects, teachers, students and enrollments in EduRPG."""

from datetime import timedelta

import dagster as dg

from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase
from sync_pipelines.defs.bakalari.source import TARGET, BakalariSource
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.sync import SyncRunConfig
from sync_pipelines.sync.run import run_sync


@sync_asset(
    name=TARGET,
    group="bakalari",
    pool="bakalari_api",
    fresh_within=timedelta(minutes=30),
    kinds={"rest", "postgres"},
    description="Bakaláři's classes, subjects, teachers, students and enrollments, upserted into EduRPG "
    "(tracked by ExternalRef, never deleted). Shards batch the student accounts; the operator's lookups are "
    "read and written in every run.",
)
def bakalari_entities(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    bakalari: BakalariResource,
    edurpg_database: EduRpgDatabase,
    sync_state: SyncStateResource,
):
    yield from run_sync(context, config, BakalariSource(bakalari, edurpg_database), sync_state.store())
