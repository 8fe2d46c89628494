"""The user-kinds domain's definitions."""

import dagster as dg

from sync_pipelines.defs.user_kinds.assets import user_kinds
from sync_pipelines.defs.user_kinds.automation import user_kind_sync_daily
from sync_pipelines.defs.user_kinds.checks import user_kinds_coverage, user_kinds_valid_values
from sync_pipelines.defs.user_kinds.jobs import user_kind_sync, user_kind_sync_undo
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase

defs = dg.Definitions(
    assets=[user_kinds],
    asset_checks=[user_kinds_valid_values, user_kinds_coverage],
    jobs=[user_kind_sync, user_kind_sync_undo],
    schedules=[user_kind_sync_daily],
    resources={
        "portaildf": PortailDfResource(
            api_url=dg.EnvVar("PORTAILDF_API_URL"),
            username=dg.EnvVar("PORTAILDF_USERNAME"),
            password=dg.EnvVar("PORTAILDF_PASSWORD"),
        ),
        "zlv_database": ZlvDatabase(database_url=dg.EnvVar("ZLV_DATABASE_URL")),
    },
)
