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

Steps 1-3 are the source's planning strategy (``SyncSource.plan``): ``sync.planning`` for a sync; a reviewed plan
or an undo plans from saved changes instead (``sync.replay``). Steps 4-5 are the same for every planning.

``execute`` is the whole run, with no orchestrator: an asset's body (``defs.shared.sync_run``) calls it, and so do
the benchmarks.
"""

from __future__ import annotations

import contextlib
import time

from sync_pipelines.core.http import run_started
from sync_pipelines.sync.apply import apply_plan
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.lease import HeldLease
from sync_pipelines.sync.outcome import SyncOutcome
from sync_pipelines.sync.record_errors import RecordErrors, max_record_errors_percent
from sync_pipelines.sync.record_history import keep_outcomes
from sync_pipelines.sync.source import SyncSource
from sync_pipelines.sync.state import SyncStateStore


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
        contextlib.nullcontext() if scope.dry_run else state.leases.hold(source.target, scope.run_id)
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
    """The one run: planned by the source's strategy (``SyncSource.plan``), then saved (a dry run) or applied in
    batches."""
    started = time.monotonic()
    planned = await source.plan(state, scope)
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
            state.plans.save(
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
