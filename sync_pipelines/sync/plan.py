"""A typed plan: what a sync would do to each record, computed from desired and current state alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TypeAlias

from sync_pipelines.core.json_value import JsonInput

# A field's value as every sync carries it, plans, saves and audits it: what JSON holds (the state database keeps
# values as JSON text), in read-only containers so that a domain's ``list[str]`` or ``dict[str, int]`` is one. The
# same type as a request's JSON body (``core.json_value.JsonInput``), defined once there.
Value: TypeAlias = JsonInput


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"


# The skip categories the engine itself gives: a planned change the target no longer expects (a reviewed plan or
# an undo), and a record the target would not give (a row error).
CONFLICT = "conflict"
READ_FAILED = "read_failed"


class Conflict(str):
    """A writer's reason for the planned fields of a record it left alone because the target no longer held their
    expected old value (a reviewed plan or an undo applied after someone else changed them): audited
    ``conflict`` field by field, reported as a skip, never a failure.

    ``fields`` names the fields left alone; the record's other planned fields were written. Empty: every planned
    field of the record was left alone (the row is gone, say)."""

    fields: tuple[str, ...]

    def __new__(cls, reason: str, fields: Iterable[str] = ()) -> Conflict:
        conflict = super().__new__(cls, reason)
        conflict.fields = tuple(fields)
        return conflict

    def left_alone(self, record: PlannedRecord) -> set[str]:
        """The fields of ``record``'s changes this conflict kept from being written."""
        planned = {change.field for change in record.changes}
        return planned & set(self.fields) if self.fields else planned


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Value
    new: Value


@dataclass(frozen=True)
class Skip:
    """A record left alone, and why. ``category`` is counted in metadata (e.g. ``no_rt_user``, ``invalid``)."""

    key: str
    category: str
    reason: str


@dataclass(frozen=True)
class PlannedRecord:
    key: str
    action: Action
    desired: Mapping[str, Value] = field(default_factory=dict)
    changes: tuple[FieldChange, ...] = ()
    category: str | None = None
    reason: str | None = None

    def leaving(self, fields: Iterable[str]) -> PlannedRecord:
        """This record without the changes of ``fields`` (kept from a write by a conflict)."""
        left = set(fields)
        return replace(self, changes=tuple(c for c in self.changes if c.field not in left))

    @property
    def writes(self) -> bool:
        return self.action is Action.UPDATE or self.action is Action.CREATE  # identity: hot in 100k-row plans


@dataclass
class SyncPlan:
    target: str
    records: list[PlannedRecord]

    @property
    def to_write(self) -> list[PlannedRecord]:
        return [record for record in self.records if record.writes]

    @property
    def skipped(self) -> list[PlannedRecord]:
        return [record for record in self.records if record.action is Action.SKIP]

    def counts(self) -> dict[str, int]:
        counts = Counter(record.action.value for record in self.records)
        return {action.value: counts.get(action.value, 0) for action in Action}

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(record.category or "skipped" for record in self.skipped))

    def field_changes(self) -> int:
        return sum(len(record.changes) for record in self.records)


def written_changes(record: PlannedRecord, reason: str | None) -> tuple[FieldChange, ...]:
    """The changes of ``record`` its writer made, from the writer's answer for it: no reason, all of them; a
    ``Conflict``, those it did not leave alone; a failure, none."""
    if reason is None:
        return record.changes
    if isinstance(reason, Conflict):
        left = reason.left_alone(record)
        return tuple(change for change in record.changes if change.field not in left)
    return ()


def values_equal(old: Value, new: Value) -> bool:
    """Equality as the target sees it: ``9`` and ``"9"`` are the same value in a text field."""
    if old == new:
        return True
    if old is None or new is None or isinstance(old, bool) or isinstance(new, bool):
        return False
    if isinstance(old, (list, tuple)) or isinstance(new, (list, tuple)):
        return False
    return str(old) == str(new)


def plan_changes(
    target: str,
    desired: Mapping[str, Mapping[str, Value]],
    current: Mapping[str, Mapping[str, Value] | None],
    skips: Iterable[Skip] = (),
) -> SyncPlan:
    """Compare each desired record with its current state, field by field.

    A key missing from ``current`` (or mapped to ``None``) is a ``CREATE``; only the fields named in the desired
    record are compared, so fields the sync does not own are never touched. Records come out in the order of
    ``desired``, then the skips.
    """
    records: list[PlannedRecord] = []
    for key, wanted in desired.items():
        existing = current.get(key)
        if existing is None:
            changes = tuple(FieldChange(name, None, value) for name, value in wanted.items())
            records.append(PlannedRecord(key, Action.CREATE, wanted, changes))
            continue
        changes = tuple(
            FieldChange(name, existing.get(name), value)
            for name, value in wanted.items()
            if not values_equal(existing.get(name), value)
        )
        action = Action.UPDATE if changes else Action.UNCHANGED
        records.append(PlannedRecord(key, action, wanted, changes))
    seen = set(desired)
    for skip in skips:
        if skip.key in seen:
            continue
        seen.add(skip.key)
        records.append(PlannedRecord(skip.key, Action.SKIP, category=skip.category, reason=skip.reason))
    return SyncPlan(target, records)
