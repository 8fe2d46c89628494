"""Run history upkeep: Dagster never prunes old runs, so a weekly job deletes finished runs older than N days."""

import os
from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from sync_pipelines.core.env import env_timezone

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def default_retention_days() -> int:
    raw = os.environ.get("SYNC_RUN_RETENTION_DAYS", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 90


class PruneRunHistoryConfig(dg.Config):
    older_than_days: int | None = Field(
        default=None,
        ge=1,
        description="Delete finished runs older than this; unset: SYNC_RUN_RETENTION_DAYS or 90.",
    )
    dry_run: bool = Field(default=False, description="Only count what would be deleted.")


def prune_runs(instance: dg.DagsterInstance, older_than: datetime, dry_run: bool = False) -> int:
    """Delete finished runs created before ``older_than`` with their event logs; returns how many."""
    old_and_finished = dg.RunsFilter(created_before=older_than, statuses=FINISHED)
    if dry_run:
        return instance.get_runs_count(filters=old_and_finished)
    deleted = 0
    while run_ids := instance.get_run_ids(filters=old_and_finished, limit=500):
        for run_id in run_ids:
            instance.delete_run(run_id)
            deleted += 1
    return deleted


@dg.op(description="Deletes finished runs, and their events, older than the retention period.")
def prune_old_runs(context: dg.OpExecutionContext, config: PruneRunHistoryConfig) -> dg.Output[int]:
    days = config.older_than_days or default_retention_days()
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    count = prune_runs(context.instance, cutoff, config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"{verb} {count} finished run(s) created before {cutoff:%Y-%m-%d %H:%M} UTC ({days} days)"
    )
    return dg.Output(count, metadata={"runs_deleted": 0 if config.dry_run else count, "retention_days": days})


@dg.job(name="prune_run_history", executor_def=dg.in_process_executor, tags={"sync/maintenance": "true"})
def prune_run_history() -> None:
    prune_old_runs()


prune_run_history_weekly = dg.ScheduleDefinition(
    name="prune_run_history_weekly",
    job=prune_run_history,
    cron_schedule="0 4 * * 0",
    execution_timezone=env_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays at 04:00: delete finished runs older than SYNC_RUN_RETENTION_DAYS (default 90).",
)
