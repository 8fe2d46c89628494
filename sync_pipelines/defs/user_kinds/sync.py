"""The user-kind sync declared: Portail DF -> ZLV's ``users.kind`` (``user_kinds``), job ``user_kind_sync``, daily."""

from datetime import timedelta

import dagster as dg

from sync_pipelines.core.settings import api_settings
from sync_pipelines.defs.shared.sync_spec import HistorySpec, ScheduleSpec, SourceInputs, SyncSpec
from sync_pipelines.defs.user_kinds.checks import user_kinds_coverage, user_kinds_valid_values
from sync_pipelines.defs.user_kinds.history import user_kind_history
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, UserKindsResources, ZlvDatabase
from sync_pipelines.defs.user_kinds.source import TARGET, UserKindsSource


def user_kinds_source(run: SourceInputs[UserKindsResources]) -> UserKindsSource:
    return UserKindsSource(run.resources.portaildf, run.resources.zlv_database)


USER_KINDS_SYNC = SyncSpec[UserKindsResources](
    system="user_kinds",
    target=TARGET,
    job="user_kind_sync",
    group="user_kinds",
    pool="portaildf_api",
    tags={"sync/target": "zlv", "sync/api": "portaildf"},
    variables=("PORTAILDF_API_URL", "PORTAILDF_USERNAME", "PORTAILDF_PASSWORD", "ZLV_DATABASE_URL"),
    settings=api_settings("PORTAILDF"),
    resources=UserKindsResources(
        portaildf=PortailDfResource(
            api_url=dg.EnvVar("PORTAILDF_API_URL"),
            username=dg.EnvVar("PORTAILDF_USERNAME"),
            password=dg.EnvVar("PORTAILDF_PASSWORD"),
        ),
        zlv_database=ZlvDatabase(database_url=dg.EnvVar("ZLV_DATABASE_URL")),
    ),
    source=user_kinds_source,
    checks=(user_kinds_valid_values, user_kinds_coverage),
    record_history=HistorySpec("a ZLV user id or e-mail", user_kind_history),
    schedule=ScheduleSpec(
        name="user_kind_sync_daily",
        default_cron="0 3 * * *",
        description="Every shard, daily at 03:00 in SYNC_TIMEZONE.",
    ),
    kinds=frozenset({"rest", "postgres"}),
    fresh_within=timedelta(days=1),
    # Measured at 21 s for 5,000 accounts, the rate-limited lookups 15 s of it (docs/benchmarks.md): 100,000
    # accounts take about 6 min. 2 h is the margin.
    max_runtime=timedelta(hours=2),
    description="users.kind in the Zéro Logement Vacant database, from the Portail DF exterieur / gestionnaire "
    "flags of each user's account.",
    job_description="Portail DF -> users.kind in the Zéro Logement Vacant database (replaces sync_user_kind.py).",
    undo_description="Undo a user_kind_sync run (config run_id): users.kind back to the kinds it replaced, where "
    "ZLV still holds what it wrote; a dry run unless dry_run: false.",
)
