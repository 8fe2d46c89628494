"""When the user-kind sync runs: daily at 03:00 (the seed was run by hand)."""

import dagster as dg

from sync_pipelines.core.env import env_timezone
from sync_pipelines.defs.systems import schedule_status
from sync_pipelines.defs.user_kinds.jobs import user_kind_sync

user_kind_sync_daily = dg.ScheduleDefinition(
    name="user_kind_sync_daily",
    job=user_kind_sync,
    cron_schedule="0 3 * * *",
    execution_timezone=env_timezone(),
    default_status=schedule_status("user_kinds"),
    description="Every shard, daily at 03:00 in SYNC_TIMEZONE.",
)
