"""The RT domain's definitions: its sync, built from its spec (``defs/rt/sync.py``), and the sensor that starts
it when students change."""

import dagster as dg

from sync_pipelines.defs.rt.automation import students_changed
from sync_pipelines.defs.rt.sync import RT_SYNC
from sync_pipelines.defs.shared.sync_builder import build_sync

rt = build_sync(RT_SYNC)
rt_user_custom_fields, rt_user_sync, rt_user_sync_undo = rt.asset, rt.job, rt.undo_job
rt_user_sync_daily = rt.schedule
defs = dg.Definitions.merge(rt.definitions, dg.Definitions(sensors=[students_changed]))
