"""The RT domain's definitions."""

import dagster as dg

from sync_pipelines.defs.rt.assets import rt_user_custom_fields
from sync_pipelines.defs.rt.automation import rt_user_sync_daily, students_changed
from sync_pipelines.defs.rt.checks import rt_custom_fields_exist, rt_matches_students
from sync_pipelines.defs.rt.jobs import rt_user_sync, rt_user_sync_undo
from sync_pipelines.defs.rt.resources import RequestTrackerResource

defs = dg.Definitions(
    assets=[rt_user_custom_fields],
    asset_checks=[rt_custom_fields_exist, rt_matches_students],
    jobs=[rt_user_sync, rt_user_sync_undo],
    schedules=[rt_user_sync_daily],
    sensors=[students_changed],
    resources={
        "request_tracker": RequestTrackerResource(url=dg.EnvVar("RT_URL"), token=dg.EnvVar("RT_TOKEN"))
    },
)
