"""The Bakaláři sync declared: Bakaláři -> EduRPG (``bakalari_entities``), job ``bakalari_sync``, every 15 minutes."""

from datetime import timedelta

import dagster as dg

from sync_pipelines.core.settings import api_settings
from sync_pipelines.defs.bakalari.accounts import SAVE_PATIENCE
from sync_pipelines.defs.bakalari.checks import (
    bakalari_students_needing_login,
    edurpg_external_refs_resolve,
    edurpg_unique_bakalari_ids,
)
from sync_pipelines.defs.bakalari.history import bakalari_history
from sync_pipelines.defs.bakalari.resources import BakalariResource, BakalariResources, EduRpgDatabase
from sync_pipelines.defs.bakalari.source import TARGET, BakalariSource
from sync_pipelines.defs.shared.sync_spec import HistorySpec, ScheduleSpec, SourceInputs, SyncSpec


def bakalari_source(run: SourceInputs[BakalariResources]) -> BakalariSource:
    return BakalariSource(run.resources.bakalari, run.resources.edurpg_database)


BAKALARI_SYNC = SyncSpec[BakalariResources](
    system="bakalari",
    target=TARGET,
    job="bakalari_sync",
    group="bakalari",
    pool="bakalari_api",
    tags={"sync/target": "edurpg", "sync/api": "bakalari"},
    variables=("BAKALARI_URL", "BAKALARI_USERNAME", "BAKALARI_PASSWORD", "EDURPG_DATABASE_URL"),
    settings=(*api_settings("BAKALARI"), SAVE_PATIENCE),
    resources=BakalariResources(
        bakalari=BakalariResource(
            url=dg.EnvVar("BAKALARI_URL"),
            username=dg.EnvVar("BAKALARI_USERNAME"),
            password=dg.EnvVar("BAKALARI_PASSWORD"),
        ),
        edurpg_database=EduRpgDatabase(database_url=dg.EnvVar("EDURPG_DATABASE_URL")),
    ),
    source=bakalari_source,
    checks=(edurpg_external_refs_resolve, edurpg_unique_bakalari_ids, bakalari_students_needing_login),
    record_history=HistorySpec("a Bakaláři id or an EduRPG user id", bakalari_history),
    # The old cron's school-hours variant: BAKALARI_SYNC_CRON="0,15,30,45 7-17 * * 1-5".
    schedule=ScheduleSpec(
        name="bakalari_sync_every_15_minutes",
        default_cron="*/15 * * * *",
        description="Every shard, every 15 minutes (the EduRPG cron's */15 * * * *).",
    ),
    kinds=frozenset({"rest", "postgres"}),
    fresh_within=timedelta(minutes=30),
    # Measured at 10 s for 300 accounts (docs/benchmarks.md), most of it reading accounts: a school ten times
    # larger on a server ten times slower stays under 20 min. 2 h is the margin.
    max_runtime=timedelta(hours=2),
    description="Bakaláři's classes, subjects, teachers, students and enrollments, upserted into EduRPG "
    "(tracked by ExternalRef, never deleted). Shards batch the student accounts; the operator's lookups are "
    "read and written in every run.",
    job_description="Bakaláři (operator and student accounts) -> EduRPG classes, subjects, users and enrollments.",
    undo_description="Undo a bakalari_sync run (config run_id): updated fields back to what it replaced, where "
    "EduRPG still holds what it wrote; rows it created are listed for a person (EduRPG's cascades would delete "
    "game history). A dry run unless dry_run: false.",
)
