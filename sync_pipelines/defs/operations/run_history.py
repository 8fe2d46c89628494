"""Run history upkeep: Dagster never prunes old runs, so a weekly job deletes finished runs older than N days,
and the sync state's audit rows, record history (runs and their per-record outcomes), saved plans and stale
write-ahead rows older than their own retention: they hold old values of the targets' fields (names, emails,
grades) and what each run did to each person's record, which must not outlive the organisation's policy.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from sync_pipelines.core.env import NumberSetting
from sync_pipelines.core.settings import (
    AUDIT_RETENTION,
    PLAN_RETENTION,
    RUN_RETENTION,
    WRITE_AHEAD_RETENTION,
)
from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.systems import schedule_timezone
from sync_pipelines.sync.replay import PLAN_AGE_SETTING, plan_max_age

# What the sync state keeps, and the setting of its retention in days. Record history's runs and outcomes go
# with the audit rows they explain.
STATE_RETENTION: dict[str, NumberSetting] = {
    "audit": AUDIT_RETENTION,
    "outcomes": AUDIT_RETENTION,
    "runs": AUDIT_RETENTION,
    "plans": PLAN_RETENTION,
    "write_ahead": WRITE_AHEAD_RETENTION,
}

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def default_retention_days() -> int:
    """``SYNC_RUN_RETENTION_DAYS`` (90): a value that is not a whole number of days from 1 to 36500 is refused in
    one line naming it, never replaced by the default."""
    return int(RUN_RETENTION.number())


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
@reported_as_failures
def prune_old_runs(context: dg.OpExecutionContext, config: PruneRunHistoryConfig) -> dg.Output[int]:
    days = config.older_than_days or default_retention_days()
    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    count = prune_runs(context.instance, cutoff, config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"{verb} {count} finished run(s) created before {cutoff:%Y-%m-%d %H:%M} UTC ({days} days)"
    )
    return dg.Output(count, metadata={"runs_deleted": 0 if config.dry_run else count, "retention_days": days})


class PruneSyncStateConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Only count what would be deleted.")


def state_retention() -> dict[str, timedelta]:
    """Each kind of state row's retention from its setting; saved plans are kept at least as long as one may
    be applied (``SYNC_PLAN_MAX_AGE_HOURS``), so pruning never takes a plan still under review."""
    retention = {name: timedelta(days=setting.number()) for name, setting in STATE_RETENTION.items()}
    retention["plans"] = max(retention["plans"], plan_max_age())
    return retention


@dg.op(
    description="Deletes the sync state's audit rows, record history, saved plans and stale write-ahead rows "
    f"older than their retention ({', '.join(dict.fromkeys(setting.name for setting in STATE_RETENTION.values()))}; "
    f"plans at least {PLAN_AGE_SETTING})."
)
@reported_as_failures
def prune_sync_state(context: dg.OpExecutionContext, config: PruneSyncStateConfig) -> dg.Output[dict]:
    now = datetime.now(timezone.utc)
    retention = state_retention()
    counts = (
        SyncStateResource()
        .store()
        .prune({name: now - kept for name, kept in retention.items()}, config.dry_run)
    )
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"sync state: {verb} "
        + ", ".join(f"{counts[name]} {name} row(s) older than {retention[name].days} days" for name in counts)
    )
    metadata = {f"{name}_deleted": 0 if config.dry_run else count for name, count in counts.items()}
    metadata |= {f"{name}_retention_days": retention[name].days for name in counts}
    return dg.Output(counts, metadata=metadata)


@dg.job(
    name="prune_run_history",
    executor_def=run_worker_executor,
    tags={"sync/maintenance": "true"},
    description="Delete finished runs older than SYNC_RUN_RETENTION_DAYS (default 90) and the sync state's audit "
    "rows, record history, saved plans and stale write-ahead rows older than their retention settings; dry_run: "
    "true only counts.",
)
def prune_run_history() -> None:
    prune_old_runs()
    prune_sync_state()


prune_run_history_weekly = dg.ScheduleDefinition(
    name="prune_run_history_weekly",
    job=prune_run_history,
    cron_schedule="0 4 * * 0",
    execution_timezone=schedule_timezone(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays at 04:00: delete finished runs older than SYNC_RUN_RETENTION_DAYS (default 90), and the "
    "sync state's audit rows, record history, saved plans and stale write-ahead rows older than their retention.",
)
