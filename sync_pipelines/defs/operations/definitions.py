"""The operations domain's definitions."""

import dagster as dg

from sync_pipelines.defs.operations.alerts import sync_failure_alert
from sync_pipelines.defs.operations.checks_job import sync_checks
from sync_pipelines.defs.operations.record_history import record_history
from sync_pipelines.defs.operations.run_history import prune_run_history, prune_run_history_weekly
from sync_pipelines.defs.operations.run_workers import run_worker_watchdog

defs = dg.Definitions(
    jobs=[sync_checks, prune_run_history, record_history],
    schedules=[prune_run_history_weekly],
    sensors=[sync_failure_alert, run_worker_watchdog],
)
