"""Reviewed plans and undo: runs of the same engine whose desired state is a saved plan, or a run's audit reversed.

A dry run saves its plan (every record it would write, field by field, old -> new) in the state database's
``sync_plans`` table, under its run id. ``apply_plan_id: <id>`` applies exactly that plan, field by field: it
writes the fields the plan changes and nothing else, each only where the target still holds the plan's old value,
over whatever the target holds now in every other field. A field whose value moved since is a ``conflict``
(audited so, field by field) and left alone; the record's other planned fields are still written. Plans older
than ``SYNC_PLAN_MAX_AGE_HOURS`` (default 24) are refused, and so is a plan of another target.

An undo (``<sync>_undo`` jobs, config ``run_id``) is the plan that reverses a run's applied changes (audit
``new -> old``), with the same conflict rule: a field must still hold what the run wrote. It is a dry run
unless ``dry_run: false``; its preview is saved like any dry run's plan, and its own changes are audited, so an
undo can be undone. A domain says which changes an undo may reverse (``SyncSource.undo_changes``: Bakaláři keeps
the rows a run created), how to read the target without reading the source system (``read_target``), and how
to write only the fields whose old value still holds (``write_if_unchanged``).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone

from sync_pipelines.core.errors import SyncError
from sync_pipelines.core.settings import PLAN_MAX_AGE
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.in_flight import settle_in_flight
from sync_pipelines.sync.outcome import Current, Desired, PlannedRun, SyncOutcome
from sync_pipelines.sync.plan import (
    CONFLICT,
    READ_FAILED,
    Action,
    Conflict,
    FieldChange,
    PlannedRecord,
    SyncPlan,
)
from sync_pipelines.sync.report import Count, Figure, Markdown, Text, log_plan, records_table
from sync_pipelines.sync.source import SyncSource, moved_fields
from sync_pipelines.sync.state import APPLIED, SavedPlan, Settlement, SyncStateStore

PLAN_AGE_SETTING = PLAN_MAX_AGE.name
# How far in the future a saved plan may be dated (hosts' clocks differ a little) before it is refused.
CLOCK_SKEW_ALLOWED = timedelta(minutes=5)


class PlanRefused(SyncError):
    """A saved plan or an undo that cannot be applied; the message names the id and what to do."""


def plan_max_age() -> timedelta:
    return timedelta(hours=PLAN_MAX_AGE.number())


def reviewed_plan(state: SyncStateStore, plan_id: str, target: str) -> SavedPlan:
    """The saved plan ``plan_id`` of ``target``; unknown, expired or another target's plan is refused."""
    max_age = plan_max_age()
    hours = f"{PLAN_AGE_SETTING}={max_age.total_seconds() / 3600:g}"
    plan = state.plans.load(plan_id)
    if plan is None:
        raise PlanRefused(
            f"apply_plan_id {plan_id!r}: no saved plan has this id (a plan is saved by a dry run under its run "
            f"id, and kept {hours} hours); run a dry run and apply its plan id"
        )
    if plan.target != target:
        raise PlanRefused(
            f"apply_plan_id {plan_id!r} is a plan of {plan.target}, not of {target}; apply it with that sync"
        )
    age = datetime.now(timezone.utc) - plan.created_at
    if age < -CLOCK_SKEW_ALLOWED:
        # Saved on a host whose clock runs ahead: its age would stay negative, and it would never expire.
        raise PlanRefused(
            f"apply_plan_id {plan_id!r} is dated {-age.total_seconds() / 60:.0f} minutes in the future "
            f"({plan.created_at:%Y-%m-%d %H:%M} UTC): a clock skew between the host that saved it and this one; "
            "set both clocks right (NTP), then run a new dry run and review its plan"
        )
    if age > max_age:
        raise PlanRefused(
            f"apply_plan_id {plan_id!r} expired: saved {age.total_seconds() / 3600:.1f} hours ago, plans are "
            f"applied for {hours} hours only; run a new dry run and review its plan"
        )
    return plan


def undo_plan(
    source: SyncSource,
    state: SyncStateStore,
    run_id: str,
    settled: Settlement | None = None,
    dry_run: bool = False,
) -> tuple[list[PlannedRecord], list[tuple[str, str]]]:
    """The records that reverse ``run_id``'s applied changes (expected old: what the run wrote; new: what it
    replaced), and the records an undo leaves to a person, with why.

    ``settled``: the settlement of what interrupted runs left in flight, made at the start of the undo
    (``sync.in_flight``); recorded already, or for a ``dry_run`` only worked out, in which case its changes
    found applied count as applied here. A change of the run still in flight after it (its record could not be
    read) is refused: the undo cannot know whether to reverse it."""
    target, rows = state.audit.applied_changes(run_id)
    left = [
        batch for batch in state.settlement.judge(source.target, {}).batches if batch.run_id == run_id
    ]  # reads only
    if target is None and left:
        target = source.target  # killed before any batch of it was recorded: all its changes are in flight
    if target is None:
        raise PlanRefused(
            f"run_id {run_id!r}: the audit log (SYNC_STATE_DATABASE_URL) holds no change that run applied; "
            "nothing to undo"
        )
    if target != source.target:
        raise PlanRefused(
            f"run_id {run_id!r} wrote to {target}, not to {source.target}; undo it with that sync's job"
        )
    if settled is not None:
        ours = [batch for batch in settled.batches if batch.run_id == run_id]
        unknown = sum(len(batch.unread) for batch in (ours if dry_run else left))
        if unknown:
            raise PlanRefused(
                f"run_id {run_id!r}: {unknown} change(s) that run left in flight could not be read back from "
                f"{target}, so whether they were applied is unknown; nothing was undone: run the undo again "
                f"once {target} answers for those records"
            )
        if dry_run:
            rows = rows + [
                (change.key, change.field, change.old, change.new)
                for batch in ours
                for change in batch.settled
                if change.status == APPLIED
            ]
    applied: dict[str, dict[str, FieldChange]] = {}
    for key, field, old, new in rows:
        earlier = applied.setdefault(key, {}).get(field)
        applied[key][field] = FieldChange(field, earlier.old if earlier else old, new)
    records: list[PlannedRecord] = []
    kept: list[tuple[str, str]] = []
    for key, changes in applied.items():
        undone, note = source.undo_changes(key, list(changes.values()))
        if note:
            kept.append((key, note))
        reverse = tuple(FieldChange(c.field, c.new, c.old) for c in undone)
        if reverse:
            records.append(PlannedRecord(key, Action.UPDATE, {c.field: c.new for c in reverse}, reverse))
    return records, kept


class ReplaySource(SyncSource):
    """A domain's source whose desired state is a fixed list of records (a saved plan, an undo): planned by
    ``plan_replay_run``, the target read with ``read_target`` and written with ``write_if_unchanged``; the
    domain's run hooks are not called. Planning leaves it as it was made: what it works out (an undo's records,
    the conflicts) is in the run's outcome."""

    def __init__(
        self,
        inner: SyncSource,
        records: list[PlannedRecord],
        plan_id: str | None = None,
        undo_of: str | None = None,
        kept: list[tuple[str, str]] | None = None,
    ) -> None:
        self.inner = inner
        self.records = records
        self.plan_id = plan_id
        self.undo_of = undo_of
        self.kept = kept or []
        self.target = inner.target
        self.source_name = inner.source_name
        self.default_batch_size = inner.default_batch_size
        self.remembers_written = inner.remembers_written
        self.count_names = inner.count_names
        self.personal_fields = inner.personal_fields

    def shard_of(self, key: str) -> str:
        return self.inner.shard_of(key)

    def label(self, key: str) -> str:
        return self.inner.label(key)

    @contextlib.asynccontextmanager
    async def session(self, scope: RunScope) -> AsyncIterator[None]:
        async with self.inner.session(scope):
            yield

    async def plan(self, state: SyncStateStore, scope: RunScope) -> PlannedRun:
        return await plan_replay_run(self, state, scope)

    async def read_current(self, keys: list[str]) -> Current:
        return await self.inner.read_target(keys)

    @property
    def since(self) -> str:
        """What a conflicting field changed since: the run an undo reverses, or the reviewed plan."""
        return f"run {self.undo_of}" if self.undo_of else "the plan"

    async def write(self, batch: list[PlannedRecord]) -> Mapping[str, str]:
        outcome = self.inner.write_if_unchanged(batch)
        answer = await outcome if inspect.isawaitable(outcome) else outcome
        return {
            key: Conflict(f"changed since {self.since}: {reason}", reason.fields)
            if isinstance(reason, Conflict)
            else reason
            for key, reason in answer.items()
        }

    def settles(self, scope: RunScope) -> bool:
        return False

    def metadata(self, outcome: SyncOutcome) -> dict[str, Figure]:
        """The plan's or the undo's ids, and the fields left alone as conflicts and the records kept, and why."""
        metadata: dict[str, Figure] = {}
        if self.plan_id:
            metadata["plan_id"] = Text(self.plan_id)
        if self.undo_of:
            metadata["undo_of"] = Text(self.undo_of)
            if outcome.result is not None:
                metadata["fields_restored"] = Count(outcome.result.field_changes)
        rows = self.conflict_rows(outcome)
        metadata["conflicts"] = Count(len({key for key, _, _ in rows}))
        if rows:
            metadata["conflict_records"] = Markdown(
                records_table(("record", "field", "left alone because"), rows, self.label)
            )
        if outcome.kept:
            metadata["kept_for_a_person"] = Markdown(
                records_table(("record", "kept because"), outcome.kept, self.label)
            )
        return metadata

    def conflict_rows(self, outcome: SyncOutcome) -> list[tuple[str, str, str]]:
        """One row per field left alone, (record, field, why): at planning (``outcome.conflicts``) or by the
        writer (``result.conflicts``)."""
        rows = [(r.key, c.field, r.reason or "") for r in outcome.conflicts for c in r.changes]
        if outcome.result is not None and outcome.result.conflicts:
            planned = {record.key: record for record in outcome.plan.to_write}
            for key, reason in sorted(outcome.result.conflicts.items()):
                left = reason.left_alone(planned[key]) if key in planned else set(reason.fields)
                rows += [(key, name, str(reason)) for name in sorted(left)]
        return rows


def plan_replay(
    target: str, records: list[PlannedRecord], current: Current, since: str = "the plan"
) -> tuple[SyncPlan, list[PlannedRecord]]:
    """The plan of a replay, judged against what the target holds now, field by field: of each record, the
    changes whose field still holds the old value are written over what the target holds in every other field;
    fields already at the new value are dropped; a field that holds neither is a conflict, left alone while the
    record's other changes go ahead. A record to create that exists now is a conflict whole. Returns the plan and
    the conflicts (one record each, with the changes left alone and why: changed since ``since``)."""
    planned: list[PlannedRecord] = []
    conflicts: list[PlannedRecord] = []
    for record in records:
        if record.key in current.failures:
            planned.append(
                PlannedRecord(
                    record.key, Action.SKIP, category=READ_FAILED, reason=current.failures[record.key]
                )
            )
            continue
        held = current.values.get(record.key)
        # The changes not made yet: a field already holding the new value needs no write.
        pending = tuple(
            c for c in record.changes if moved_fields((FieldChange(c.field, c.new, c.new),), held)
        )
        moved = moved_fields(pending, held)
        if record.action is Action.CREATE and held is not None and pending:
            moved = [c.field for c in pending]
            reason = f"changed since {since}: the record exists now"
        else:
            reason = f"changed since {since}: {', '.join(moved)}"
        kept = tuple(c for c in pending if c.field in moved)
        writes = tuple(c for c in pending if c.field not in moved)
        if kept:
            conflicts.append(PlannedRecord(record.key, Action.SKIP, record.desired, kept, CONFLICT, reason))
        if writes:
            if held is None and record.action is Action.CREATE:
                planned.append(PlannedRecord(record.key, Action.CREATE, record.desired, writes))
            else:
                # What the target holds now, with the planned fields that still hold their old value changed:
                # the other fields are not the plan's to write.
                desired = {**(held or {}), **{c.field: c.new for c in writes}}
                planned.append(PlannedRecord(record.key, Action.UPDATE, desired, writes))
        elif kept:
            planned.append(PlannedRecord(record.key, Action.SKIP, category=CONFLICT, reason=reason))
        else:
            planned.append(PlannedRecord(record.key, Action.UNCHANGED, record.desired))
    return SyncPlan(target, planned), conflicts


async def plan_replay_run(source: ReplaySource, state: SyncStateStore, scope: RunScope) -> PlannedRun:
    """The planning strategy of a replay: settle what was left in flight, read the target, judge each change;
    the run applies the rest conditionally (``source.write``), conflicts recorded first. An undo's records are
    worked out again here, once what was left in flight is settled; ``source`` is left as it is."""
    started = time.monotonic()
    target, log = source.target, scope.log
    # What interrupted runs left in flight is settled first, so an undo reads a log that matches the target.
    settlement = await settle_in_flight(source, state, scope)
    records, kept = source.records, source.kept
    if source.undo_of:
        records, kept = undo_plan(source.inner, state, source.undo_of, settlement, scope.dry_run)
    current = await source.read_current(sorted({record.key for record in records}))
    read_seconds = time.monotonic() - started
    plan, conflicts = plan_replay(target, records, current, source.since)
    desired = Desired({record.key: dict(record.desired) for record in records})
    outcome = SyncOutcome(
        target,
        plan,
        desired,
        current,
        settlement,
        scope.dry_run,
        read_seconds=read_seconds,
        conflicts=conflicts,
        kept=kept,
    )
    what = f"undo of run {source.undo_of}" if source.undo_of else f"plan {source.plan_id}"
    log.info(
        f"{target}: {what}: {sum(len(r.changes) for r in conflicts)} field(s) of "
        f"{len(conflicts)} record(s) changed since, left alone as conflicts"
    )
    log_plan(log, plan, scope.dry_run)

    def before_apply() -> None:
        if conflicts:
            state.audit.record_conflicts(scope.run_id, target, conflicts)

    return PlannedRun(
        outcome,
        # An undo's preview is saved like any dry run's plan; a reviewed plan is saved already.
        to_save=records if source.undo_of else None,
        undo_of=source.undo_of,
        plan_id=source.plan_id,
        before_apply=before_apply,
        unreadable=dict(current.failures),
    )


def reviewed_source(source: SyncSource, state: SyncStateStore, plan_id: str) -> ReplaySource:
    plan = reviewed_plan(state, plan_id, source.target)
    return ReplaySource(source, plan.records, plan_id=plan.plan_id, undo_of=plan.undo_of)
