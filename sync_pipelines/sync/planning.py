"""A sync's planning strategy (steps 1-3 of ``sync.run``): what the source system says the target should hold,
planned against what the target holds. It is ``SyncSource.plan``'s default; a reviewed plan or an undo plans from
saved changes instead (``sync.replay``).

Planning reads and plans; it changes nothing it is given or reads: the source's answers are copied where a run's
``limit`` or a second read changes them, and what the run records later (the settlement, the records found
unchanged) is left to ``PlannedRun.before_apply``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.in_flight import TargetReads, in_flight_changes
from sync_pipelines.sync.outcome import Current, Desired, PlannedRun, SyncOutcome
from sync_pipelines.sync.plan import READ_FAILED, Action, Skip, Value, plan_changes
from sync_pipelines.sync.report import log_plan
from sync_pipelines.sync.state import Settlement, SyncStateStore


class SourceReads(TargetReads, Protocol):
    """What a sync's planning reads of its source (``SyncSource`` is one): the desired state, and whether this run
    may settle what interrupted runs left in flight."""

    async def read_desired(self, scope: RunScope) -> Desired: ...

    def settles(self, scope: RunScope) -> bool: ...


def limited(desired: Desired, scope: RunScope) -> Desired:
    """``desired`` within the run's ``limit``, which holds for the records left alone too: a ``limit: 10`` dry run
    lists ten of them, not all. A copy; ``desired`` itself when nothing is cut."""
    config = scope.config
    if config.limit is None or len(desired.skips) <= config.limit:
        return desired
    skips = config.take(desired.skips)
    kept = {skip.key for skip in skips} | set(desired.records)
    failing = {key: reason for key, reason in desired.failing.items() if key in kept}
    return replace(desired, skips=skips, failing=failing)


async def plan_sync(source: SourceReads, state: SyncStateStore, scope: RunScope) -> PlannedRun:
    """Steps 1-3: what the source system says the target should hold, planned against what the target holds."""
    started = time.monotonic()
    config, target, log = scope.config, source.target, scope.log
    desired = limited(await source.read_desired(scope), scope)
    remembered = (
        state.last_written.read(target, desired.records)
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
    read = await source.read_current(sorted(to_read))
    rechecked, unread = await _recheck_remembered(source, target, desired.records, remembered, read)
    current = Current(read.values, {**read.failures, **unread}) if unread else read
    read_seconds = time.monotonic() - started
    settlement = (
        state.settlement.judge(target, {key: current.values[key] for key in pending if key in current.values})
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
            settled = state.settlement.settle(settlement, source.remembers_written)
            log.warning(f"{target}: settled the changes an interrupted run left in flight: {settled}")
        if source.remembers_written:
            # Records read this run that already hold the desired values: later runs need not read them again.
            verified = {
                record.key: record.desired
                for record in plan.records
                if record.action is Action.UNCHANGED
                and (record.key in current.values or record.key in rechecked)
            }
            state.last_written.remember(target, scope.run_id, verified)

    return PlannedRun(
        outcome,
        to_save=plan.to_write,
        before_apply=before_apply,
        unusable=dict(desired.failing),
        unreadable={skip.key: skip.reason for skip in read_skips},
    )


async def _recheck_remembered(
    source: TargetReads,
    target: str,
    desired: Mapping[str, Mapping[str, Value]],
    remembered: Mapping[str, Mapping[str, Value]],
    current: Current,
) -> tuple[dict[str, dict[str, Value] | None], dict[str, str]]:
    """The remembered records a plan against memory would write, read from the target: the values to plan them
    with, and the records that could not be read, with why. Memory picks the fields a run writes (those whose
    desired value moved since the project last wrote them: a hand edit of another field stays, as only
    ``full_refresh`` repairs drift); the target gives each such field's old value, which the audit records and an
    undo restores, and a field someone already set as desired is not written."""
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
        return {}, {}
    fresh = await source.read_current(sorted(moved))
    rechecked: dict[str, dict[str, Value] | None] = {
        key: None if held is None else {**desired[key], **{name: held.get(name) for name in moved[key]}}
        for key, held in fresh.values.items()
        if key in moved
    }
    return rechecked, dict(fresh.failures)
