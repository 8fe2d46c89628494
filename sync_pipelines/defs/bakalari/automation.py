"""When the Bakaláři sync runs: every 15 minutes, as the EduRPG cron did."""

import dagster as dg

from sync_pipelines.core.env import env_timezone
from sync_pipelines.defs.bakalari.jobs import bakalari_sync
from sync_pipelines.defs.systems import schedule_status

# The old cron's school-hours variant is this one-line change: "0,15,30,45 7-17 * * 1-5".
BAKALARI_SYNC_CRON = "*/15 * * * *"

bakalari_sync_every_15_minutes = dg.ScheduleDefinition(
    name="bakalari_sync_every_15_minutes",
    job=bakalari_sync,
    cron_schedule=BAKALARI_SYNC_CRON,
    execution_timezone=env_timezone(),
    default_status=schedule_status("bakalari"),
    description="Every shard, every 15 minutes (the EduRPG cron's */15 * * * *).",
)
