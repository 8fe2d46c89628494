"""One sync run, start to end, for every domain: the engine's side of the ``SyncSource`` contract.

The sequence is the same for all three syncs, so it lives here once:

1. read what the target should hold (``read_desired``);
2. read what it holds, for the records not remembered from earlier runs and for those an interrupted run left
   in flight (``read_current``); then the remembered records whose desired values moved since they were last
   written, so that every write's old value is what the target holds;
3. plan, field by field; work out how the interrupted run's changes would be settled;
4. a dry run stops here: the plan and the settlement are shown, and the plan is saved for review (``sync_plans``,
   applied later with ``apply_plan_id``); nothing else is written anywhere;
5. a real run settles the interrupted changes, applies the plan in batches (write-ahead, write, audit), and
   reports; records that failed are row errors (``sync.record_errors``): reported, retried by the next run, and
   failing the run only past ``SYNC_MAX_RECORD_ERRORS_PERCENT``.

``execute`` is the whole run, with no orchestrator: an asset's body (``defs.shared.sync_run``) calls it, and so do
the benchmarks. A reviewed plan or an undo runs through ``sync.replay`` instead of steps 1-3.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from sync_pipelines.core.http import run_started
from sync_pipelines.sync.apply import apply_plan
from sync_pipelines.sync.in_flight import in_flight_changes
from sync_pipelines.sync.lease import HeldLease, target_lease
from sync_pipelines.sync.outcome import Current, PlannedRun, SyncOutcome
from sync_pipelines.sync.plan import Action, Skip, Value, plan_changes
from sync_pipelines.sync.record_errors import RecordErrors, max_record_errors_percent
from sync_pipelines.sync.record_history import keep_outcomes
from sync_pipelines.sync.replay import ReplaySource, plan_replay_run
from sync_pipelines.sync.report import log_plan
from sync_pipelines.sync.source import READ_FAILED, RunScope, SyncSource
from sync_pipelines.sync.state import Settlement, SyncStateStore


async def execute(source: SyncSource, state: SyncStateStore, scope: RunScope) -> SyncOutcome:
    """The whole run; the source's ``started``/``applied``/``stopped`` hooks bracket a real run only.

    The run's start is where every API client's deadline counts from (``<SYSTEM>_DEADLINE_SECONDS``, or
    ``SYNC_DEADLINE_SECONDS``): past it, the client sends nothing more and the run fails naming the setting.
    ``SYNC_MAX_RECORD_ERRORS_PERCENT`` is read first, so that a bad value stops the run before anything is read."""
    max_percent = max_record_errors_percent()
    clock = run_started.set(time.monotonic())
    # A run that writes holds its target's lease throughout: no other run, from any instance, writes it or
    # settles its write-ahead rows meanwhile (``sync.lease``), and checks before each batch that it still does.
    # A dry run writes nothing and takes none.
    lease: contextlib.AbstractContextManager[HeldLease | None] = (
        contextlib.nullcontext() if scope.dry_run else target_lease(state.engine, source.target, scope.run_id)
    )
    try:
        with lease as held:
            return await _execute(source, state, scope, held, max_percent)
    finally:
        run_started.reset(clock)


async def _execute(
    source: SyncSource, state: SyncStateStore, scope: RunScope, lease: HeldLease | None, max_percent: float
) -> SyncOutcome:
    async with source.session(scope):
        if not scope.dry_run:
            await source.started(scope)
        try:
            return await _run(source, state, scope, lease, max_percent)
        except BaseException as error:
            if not scope.dry_run:
                await source.stopped(scope, error)
            raise


async def _run(
    source: SyncSource, state: SyncStateStore, scope: RunScope, lease: HeldLease | None, max_percent: float
) -> SyncOutcome:
    """The one run: planned by the source's strategy, then saved (a dry run) or applied in batches."""
    started = time.monotonic()
    planned = (
        await plan_replay_run(source, state, scope)
        if isinstance(source, ReplaySource)
        else await plan_sync(source, state, scope)
    )
    # What record history needs besides the audit log: the run's kind, its skips, row errors and a dry run's plan.
    keep_outcomes(state, scope, planned, source.disclosure())
    outcome = planned.outcome
    outcome.errors = errors = RecordErrors(
        source.target,
        source.source_name,
        len(outcome.plan.records),
        max_percent,
        unusable=dict(planned.unusable),
        unreadable=dict(planned.unreadable),
    )
    if scope.dry_run:
        if planned.to_save is not None:
            # The one thing a dry run writes: its plan, for review and ``apply_plan_id`` (``sync_plans``).
            state.save_plan(
                scope.run_id, source.target, planned.to_save, outcome.plan.counts(), undo_of=planned.undo_of
            )
            outcome.plan_id = scope.run_id
        outcome.seconds = time.monotonic() - started
        return outcome
    planned.before_apply()
    outcome.result = await apply_plan(
        outcome.plan,
        source.write,
        state=state,
        run_id=scope.run_id,
        batch_size=scope.config.effective_batch_size(source.default_batch_size),
        batch_delay_seconds=scope.config.batch_delay_seconds,
        remember_written=source.remembers_written,
        log=scope.log,
        before_batch=lease.check if lease is not None else None,
    )
    errors.refused = dict(outcome.result.failures)
    # Every row error, whatever its origin, is a failed record of the run: not remembered, its shard not
    # materialized, retried by the next run.
    outcome.result.failures.update({**errors.unusable, **errors.unreadable})
    outcome.seconds = time.monotonic() - started
    await source.applied(scope, outcome)
    return outcome


async def plan_sync(source: SyncSource, state: SyncStateStore, scope: RunScope) -> PlannedRun:
    """Steps 1-3: what the source system says the target should hold, planned against what the target holds."""
    started = time.monotonic()
    config, target, log = scope.config, source.target, scope.log
    desired = await source.read_desired(scope)
    if config.limit is not None and len(desired.skips) > config.limit:
        # ``limit`` holds for the records left alone too: a ``limit: 10`` dry run lists ten of them, not all.
        desired.skips = config.take(desired.skips)
        kept = {skip.key for skip in desired.skips} | set(desired.records)
        desired.failing = {key: reason for key, reason in desired.failing.items() if key in kept}
    remembered = (
        state.last_written(target, desired.records)
        if source.remembers_written and not config.full_refresh
        else {}
    )
    pending = in_flight_changes(state, target, scope)
    settling = bool(pending) and source.settles(scope)
    if pending and not settling:
        log.info(
            f"{target}: {sum(map(len, pending.values()))} change(s) an interrupted run left in flight wait for a "
            "run over every shard, without limit, to settle them"
        )
    to_read = set(desired.records).difference(remembered)
    if settling:
        to_read.update(pending)
    current = await source.read_current(sorted(to_read))
    rechecked = await _recheck_remembered(source, target, desired.records, remembered, current)
    read_seconds = time.monotonic() - started
    settlement = (
        state.settlement(target, {key: current.values[key] for key in pending if key in current.values})
        if settling
        else Settlement(target, [])
    )
    read_skips = [
        Skip(key, READ_FAILED, reason) for key, reason in current.failures.items() if key in desired.records
    ]
    plan = plan_changes(
        target,
        {key: values for key, values in desired.records.items() if key not in current.failures},
        {**remembered, **rechecked, **current.values},
        [*read_skips, *desired.skips],
    )
    outcome = SyncOutcome(
        target, plan, desired, current, settlement, scope.dry_run, read_seconds=read_seconds
    )
    log_plan(log, plan, scope.dry_run, settlement)

    def before_apply() -> None:
        if settlement:
            settled = state.settle(settlement, source.remembers_written)
            log.warning(f"{target}: settled the changes an interrupted run left in flight: {settled}")
        if source.remembers_written:
            # Records read this run that already hold the desired values: later runs need not read them again.
            verified = {
                record.key: record.desired
                for record in plan.records
                if record.action is Action.UNCHANGED
                and (record.key in current.values or record.key in rechecked)
            }
            state.remember(target, scope.run_id, verified)

    return PlannedRun(
        outcome,
        to_save=plan.to_write,
        before_apply=before_apply,
        unusable=dict(desired.failing),
        unreadable={skip.key: skip.reason for skip in read_skips},
    )


async def _recheck_remembered(
    source: SyncSource,
    target: str,
    desired: Mapping[str, Mapping[str, Value]],
    remembered: Mapping[str, Mapping[str, Value]],
    current: Current,
) -> dict[str, dict[str, Value] | None]:
    """The remembered records a plan against memory would write, read from the target: the values to plan them
    with. Memory picks the fields a run writes (those whose desired value moved since the project last wrote them:
    a hand edit of another field stays, as only ``full_refresh`` repairs drift); the target gives each such
    field's old value, which the audit records and an undo restores, and a field someone already set as desired
    is not written. Records that cannot be read join ``current.failures``."""
    known = {
        key: desired[key]
        for key in remembered
        if key in desired and key not in current.values and key not in current.failures
    }
    moved = {
        record.key: {change.field for change in record.changes}
        for record in plan_changes(target, known, remembered).records
        if record.writes
    }
    if not moved:
        return {}
    fresh = await source.read_current(sorted(moved))
    current.failures.update(fresh.failures)
    return {
        key: None if held is None else {**desired[key], **{name: held.get(name) for name in moved[key]}}
        for key, held in fresh.values.items()
        if key in moved
    }
