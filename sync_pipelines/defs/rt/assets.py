"""The ``rt_user_custom_fields`` asset: RT users' grade and student ID fields, kept equal to ``students``."""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pandas as pd

from sync_pipelines.core.errors import AuthenticationError, ConfigurationError
from sync_pipelines.core.http import ApiError
from sync_pipelines.core.shards import selected_shards
from sync_pipelines.defs.rt.client import RequestTrackerClient, RtRecordError
from sync_pipelines.defs.rt.desired import desired_custom_fields, record_shard
from sync_pipelines.defs.rt.resources import RequestTrackerResource
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.shared.sync_reporting import log_plan, report_applied, report_dry_run
from sync_pipelines.sync import SyncRunConfig, apply_plan, plan_changes
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import Action, PlannedRecord, Skip, SyncPlan

TARGET = "rt_user_custom_fields"
DEFAULT_BATCH_SIZE = 500
READ_CHUNK = 1000


@dataclass
class RtSyncOutcome:
    plan: SyncPlan
    result: ApplyResult | None
    requests: int = 0
    retries: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)
    read_seconds: float = 0.0


async def require_user_fields(rt: RequestTrackerClient, wanted: tuple[str, ...]) -> list[str]:
    """Fail before any write when RT lacks a configured user custom field, listing those it has."""
    available = await rt.user_custom_field_names()
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ConfigurationError(
            "RT_GRADE_FIELD / RT_STUDENT_ID_FIELD",
            f"RT has no user custom field {', '.join(map(repr, missing))}; the user custom fields RT has are: "
            f"{', '.join(map(repr, available)) or 'none'}. Create the field in RT (LookupType RT::User) or point "
            "the setting at an existing one",
        )
    return available


async def read_current(
    rt: RequestTrackerClient, keys: list[str], fields: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Current values of ``fields`` for ``keys``, read concurrently; per-user failures are returned, not raised."""
    current: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    async def read(key: str) -> None:
        try:
            current[key] = await rt.user_fields(key, fields)
        except (RtRecordError, ApiError) as error:
            failures[key] = str(error)

    for start in range(0, len(keys), READ_CHUNK):
        await asyncio.gather(*(read(key) for key in keys[start : start + READ_CHUNK]))
    return current, failures


def writer_for(rt: RequestTrackerClient):
    """One PUT per user with both fields; refusals, 404s and exhausted retries fail that user only."""

    async def write(batch: list[PlannedRecord]) -> dict[str, str]:
        failures: dict[str, str] = {}

        async def put(record: PlannedRecord) -> None:
            try:
                await rt.set_user_fields(record.key, dict(record.desired))
            except AuthenticationError:
                raise
            except (RtRecordError, ApiError) as error:
                failures[record.key] = str(error)

        await asyncio.gather(*(put(record) for record in batch))
        return failures

    return write


async def sync_custom_fields(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    students: pd.DataFrame,
    request_tracker: RequestTrackerResource,
    sync_state: SyncStateResource,
    today: date,
) -> RtSyncOutcome:
    grade_field, student_id_field = request_tracker.fields()
    fields = [grade_field, student_id_field]
    desired, skips = desired_custom_fields(
        students, grade_field, student_id_field, request_tracker.grade_mode(), selected_shards(context), today
    )
    desired = dict(config.take(list(desired.items())))
    state = sync_state.store()
    async with request_tracker.client(context.log) as rt:
        await require_user_fields(rt, (grade_field, student_id_field))
        pending = state.pending(TARGET)
        remembered = {} if config.full_refresh else state.last_written(TARGET, desired)
        to_read = sorted({key for key in desired if key not in remembered} | set(pending), key=int)
        if to_read:
            context.log.info(f"reading the current values of {len(to_read)} RT user(s)")
        read_started = time.perf_counter()
        current, read_failures = await read_current(rt, to_read, fields)
        read_seconds = time.perf_counter() - read_started
        reconciled = state.reconcile_pending(TARGET, current, remember_written=True) if pending else {}
        if reconciled:
            context.log.warning(f"settled the changes an interrupted run left in flight: {reconciled}")
        read_skips = [
            Skip(key, "read_failed", reason) for key, reason in read_failures.items() if key in desired
        ]
        plan = plan_changes(
            TARGET,
            {key: values for key, values in desired.items() if key not in read_failures},
            {**remembered, **current},
            [*read_skips, *skips],
        )
        result = None
        if not config.dry_run:
            log_plan(context, plan, dry_run=False)
            verified = {
                r.key: r.desired for r in plan.records if r.action is Action.UNCHANGED and r.key in current
            }
            state.remember(TARGET, context.run_id, verified)
            result = await apply_plan(
                plan,
                writer_for(rt),
                state=state,
                run_id=context.run_id,
                batch_size=config.effective_batch_size(DEFAULT_BATCH_SIZE),
                batch_delay_seconds=config.batch_delay_seconds,
                remember_written=True,
                log=context.log,
            )
            result.failures.update({skip.key: skip.reason for skip in read_skips})
        return RtSyncOutcome(plan, result, rt.api.requests_made, rt.api.retries, reconciled, read_seconds)


def _invalid_students(context: dg.AssetExecutionContext) -> int:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("students"))
    if event is None or event.asset_materialization is None:
        return 0
    value = event.asset_materialization.metadata.get("invalid")
    return int(value.value) if value is not None else 0


@sync_asset(
    name=TARGET,
    group="rt",
    pool="rt_api",
    fresh_within=timedelta(days=1),
    kinds={"rest"},
    description="RT users' Grade and Student ID custom fields, kept equal to the students table.",
)
def rt_user_custom_fields(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    students: pd.DataFrame,
    request_tracker: RequestTrackerResource,
    sync_state: SyncStateResource,
):
    started = time.perf_counter()
    outcome = asyncio.run(
        sync_custom_fields(context, config, students, request_tracker, sync_state, date.today())
    )
    extra = {
        "sync_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        "read_seconds": dg.MetadataValue.float(round(outcome.read_seconds, 3)),
        "requests_made": dg.MetadataValue.int(outcome.requests),
        "retries": dg.MetadataValue.int(outcome.retries),
        "invalid_students": dg.MetadataValue.int(_invalid_students(context)),
    }
    if outcome.result is None:
        yield from report_dry_run(context, outcome.plan, extra)
        return
    yield from report_applied(
        context,
        outcome.plan,
        outcome.result,
        selected_shards(context),
        record_shard,
        extra,
        count_names=("updated", "unchanged", "failed"),
    )
