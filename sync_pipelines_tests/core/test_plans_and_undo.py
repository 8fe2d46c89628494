"""Saved plans (``apply_plan_id``) and undo, on the engine with an in-memory target: conflicts, expiry, undo of
an undo, and that previews write nothing but the saved plan."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipelines.sync.config import SyncRunConfig
from sync_pipelines.sync.outcome import SyncOutcome
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord, Value
from sync_pipelines.sync.replay import PlanRefused, ReplaySource, reviewed_source, undo_plan
from sync_pipelines.sync.run import execute
from sync_pipelines.sync.shards import SHARD_KEYS
from sync_pipelines.sync.source import Current, Desired, RunScope, SyncSource
from sync_pipelines.sync.state import SyncStateStore, saved_plans
from sync_pipelines_tests.harness.audit_invariant import assert_audit_matches

pytestmark = pytest.mark.unit


class DictSource(SyncSource):
    """A target held in a dict; its writes are unconditional (the engine's default check reads first)."""

    target = "fake"

    def __init__(self, held: dict[str, dict[str, Value]], desired: dict[str, dict[str, Value]]) -> None:
        self.held = held
        self.desired = desired
        self.unreadable: set[str] = set()

    async def read_desired(self, scope: RunScope) -> Desired:
        return Desired({key: dict(values) for key, values in self.desired.items()})

    async def read_current(self, keys: list[str]) -> Current:
        readable = [key for key in keys if key not in self.unreadable]
        return Current(
            {key: dict(self.held[key]) if key in self.held else None for key in readable},
            {key: "cannot be read" for key in keys if key in self.unreadable},
        )

    def write(self, batch):
        for record in batch:
            self.held.setdefault(record.key, {}).update({c.field: c.new for c in record.changes})
        return {}


@pytest.fixture
def state(tmp_path: Path) -> SyncStateStore:
    return SyncStateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}")


def run(source: SyncSource, state: SyncStateStore, run_id: str, **config) -> SyncOutcome:
    scope = RunScope(run_id, frozenset(SHARD_KEYS), SyncRunConfig(**config), logging.getLogger("test"))
    return asyncio.run(execute(source, state, scope))


def undo(source: SyncSource, state: SyncStateStore, run_id: str, of: str, dry_run: bool) -> SyncOutcome:
    records, kept = undo_plan(source, state, of)
    return run(ReplaySource(source, records, undo_of=of, kept=kept), state, run_id, dry_run=dry_run)


def dump(state: SyncStateStore) -> dict[str, list]:
    with state.engine.connect() as connection:
        return {
            table: sorted(map(repr, connection.execute(sa.text(f"SELECT * FROM {table}")).all()))
            for table in ("sync_audit", "sync_batches", "sync_last_written", "sync_plans")
        }


HELD = {"a": {"grade": "1"}, "b": {"grade": "1"}, "c": {"grade": "1"}}
WANTED = {"a": {"grade": "2"}, "b": {"grade": "2"}, "c": {"grade": "2"}}


def test_a_reviewed_plan_is_applied_exactly_and_a_record_changed_meanwhile_is_a_conflict(
    state: SyncStateStore,
) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    source = DictSource(held, WANTED)
    before = dump(state)
    preview = run(source, state, "dry-1", dry_run=True)
    assert preview.plan_id == "dry-1"
    after = dump(state)
    assert {k: v for k, v in after.items() if k != "sync_plans"} == {
        k: v for k, v in before.items() if k != "sync_plans"
    }
    assert len(after["sync_plans"]) == 1
    assert held == HELD  # the preview wrote nothing to the target

    held["b"]["grade"] = "9"  # someone changed b after the plan was reviewed
    # The source now wants something else: the reviewed plan, not a new one, is applied.
    source.desired = {"a": {"grade": "7"}, "b": {"grade": "7"}, "c": {"grade": "7"}}
    applied = run(reviewed_source(source, state, "dry-1"), state, "apply-1")
    assert held == {"a": {"grade": "2"}, "b": {"grade": "9"}, "c": {"grade": "2"}}
    assert applied.plan.skip_counts() == {"conflict": 1}
    statuses = {(r["record_key"], r["status"]) for r in state.audit.rows("fake", run_id="apply-1")}
    assert statuses == {("a", "applied"), ("b", "conflict"), ("c", "applied")}


def test_a_write_time_conflict_is_audited_and_does_not_fail_the_run(state: SyncStateStore) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    source = DictSource(held, WANTED)
    run(source, state, "dry-1", dry_run=True)
    replay = reviewed_source(source, state, "dry-1")
    original = source.read_target

    async def moved_after_planning(keys: list[str]) -> Current:
        current = await original(keys)
        if len(keys) == 1 and keys == ["c"]:
            held["c"]["grade"] = "5"
            current.values["c"] = {"grade": "5"}
        return current

    source.read_target = moved_after_planning  # type: ignore[method-assign]
    outcome = run(replay, state, "apply-1", batch_size=1)
    assert outcome.result is not None and outcome.result.failures == {}
    assert set(outcome.result.conflicts) == {"c"}
    assert held["c"] == {"grade": "5"}
    rows = state.audit.rows("fake", run_id="apply-1")
    assert {(r["record_key"], r["status"]) for r in rows} == {
        ("a", "applied"),
        ("b", "applied"),
        ("c", "conflict"),
    }


def test_unknown_expired_and_foreign_plans_are_refused_naming_the_id_and_the_setting(
    state: SyncStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = DictSource({k: dict(v) for k, v in HELD.items()}, WANTED)
    with pytest.raises(PlanRefused, match="'nope'.*SYNC_PLAN_MAX_AGE_HOURS=24"):
        reviewed_source(source, state, "nope")
    run(source, state, "dry-1", dry_run=True)
    with state.engine.begin() as connection:
        connection.execute(
            sa.update(saved_plans).values(created_at=datetime.now(timezone.utc) - timedelta(hours=25))
        )
    with pytest.raises(PlanRefused, match="'dry-1' expired.*SYNC_PLAN_MAX_AGE_HOURS=24") as refused:
        reviewed_source(source, state, "dry-1")
    assert "\n" not in str(refused.value)
    monkeypatch.setenv("SYNC_PLAN_MAX_AGE_HOURS", "48")
    assert reviewed_source(source, state, "dry-1").records
    other = DictSource({}, {})
    other.target = "other"
    with pytest.raises(PlanRefused, match="'dry-1' is a plan of fake, not of other"):
        reviewed_source(other, state, "dry-1")


def test_a_run_is_undone_and_the_undo_undone(state: SyncStateStore) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    held["d"] = {"grade": "3"}
    source = DictSource(held, {**WANTED, "d": {"grade": "4"}})
    run(source, state, "run-1")
    assert held == {**WANTED, "d": {"grade": "4"}}

    before = dump(state)
    preview = undo(source, state, "undo-preview", "run-1", dry_run=True)
    assert preview.plan.counts()["update"] == 4
    after = dump(state)
    assert after["sync_plans"] != before["sync_plans"]
    assert {k: v for k, v in after.items() if k != "sync_plans"} == {
        k: v for k, v in before.items() if k != "sync_plans"
    }
    assert held == {**WANTED, "d": {"grade": "4"}}

    held["d"]["grade"] = "8"  # changed by someone else since run-1: the undo leaves it alone
    undone = undo(source, state, "undo-1", "run-1", dry_run=False)
    assert held == {**HELD, "d": {"grade": "8"}}
    assert undone.plan.skip_counts() == {"conflict": 1}
    audit = state.audit.rows("fake")
    assert {r["run_id"] for r in audit} == {"run-1", "undo-1"}
    assert {(r["record_key"], r["old_value"], r["new_value"]) for r in audit if r["status"] == "applied"} >= {
        ("a", "1", "2"),
        ("a", "2", "1"),
    }

    undo(source, state, "undo-2", "undo-1", dry_run=False)
    assert held == {**WANTED, "d": {"grade": "8"}}
    with pytest.raises(PlanRefused, match="'nothing'"):
        undo_plan(source, state, "nothing")


def test_an_undo_preview_is_saved_and_applied_by_its_plan_id(state: SyncStateStore) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    source = DictSource(held, WANTED)
    run(source, state, "run-1")
    undo(source, state, "undo-preview", "run-1", dry_run=True)
    replay = reviewed_source(source, state, "undo-preview")
    assert replay.undo_of == "run-1"
    run(replay, state, "apply-undo")
    assert held == HELD


def test_a_plan_writes_only_its_fields_and_decides_conflicts_field_by_field(state: SyncStateStore) -> None:
    held: dict[str, dict[str, Value]] = {
        "a": {"grade": "1", "sid": "A", "note": "n"},
        "b": {"grade": "1", "sid": "B0", "note": "n"},
    }
    source = DictSource(held, {"a": {"grade": "2", "sid": "A"}, "b": {"grade": "2", "sid": "B"}})
    run(source, state, "dry-1", dry_run=True)
    held["a"]["sid"] = "HAND-EDIT"  # a field the plan does not change
    held["a"]["note"] = "by hand"  # a field the sync does not own
    held["b"]["sid"] = "B-HAND"  # one of the two fields the plan changes
    before = {key: dict(values) for key, values in held.items()}
    replay = reviewed_source(source, state, "dry-1")
    applied = run(replay, state, "apply-1")
    assert held == {
        "a": {"grade": "2", "sid": "HAND-EDIT", "note": "by hand"},
        "b": {"grade": "2", "sid": "B-HAND", "note": "n"},
    }
    rows = state.audit.rows("fake", run_id="apply-1")
    assert {(r["record_key"], r["field"], r["status"]) for r in rows} == {
        ("a", "grade", "applied"),
        ("b", "grade", "applied"),
        ("b", "sid", "conflict"),
    }
    assert [r["error"] for r in rows if r["status"] == "conflict"] == ["changed since the plan: sid"]
    assert_audit_matches(before, held, rows)
    assert applied.plan.counts()["update"] == 2
    shown = replay.metadata(applied)
    assert shown["conflicts"].value == 1
    assert "| b | sid | changed since the plan: sid |" in shown["conflict_records"].value

    undone = undo(source, state, "undo-1", "apply-1", dry_run=False)
    assert held["a"] == {"grade": "1", "sid": "HAND-EDIT", "note": "by hand"}
    assert undone.result is not None and undone.result.field_changes == 2


def test_a_write_time_conflict_keeps_the_moved_field_and_writes_the_others(state: SyncStateStore) -> None:
    held: dict[str, dict[str, Value]] = {"a": {"grade": "1", "sid": "A0"}}
    source = DictSource(held, {"a": {"grade": "2", "sid": "A"}})
    run(source, state, "dry-1", dry_run=True)
    replay = reviewed_source(source, state, "dry-1")
    original = source.read_target
    reads = []

    async def moved_after_planning(keys: list[str]) -> Current:
        reads.append(keys)
        if len(reads) == 2:  # the writer's own read, right before the write
            held["a"]["sid"] = "HAND"
        return await original(keys)

    source.read_target = moved_after_planning  # type: ignore[method-assign]
    outcome = run(replay, state, "apply-1")
    assert held == {"a": {"grade": "2", "sid": "HAND"}}
    assert outcome.result is not None and set(outcome.result.conflicts) == {"a"}
    assert outcome.result.field_changes == 1 and outcome.result.failures == {}
    rows = state.audit.rows("fake", run_id="apply-1")
    assert {(r["field"], r["status"], r["error"]) for r in rows} == {
        ("grade", "applied", None),
        ("sid", "conflict", "changed since the plan: sid"),
    }


def test_an_undo_conflict_names_the_run_it_reverses(state: SyncStateStore) -> None:
    held = {key: dict(values) for key, values in HELD.items()}
    source = DictSource(held, WANTED)
    run(source, state, "run-1")
    held["b"]["grade"] = "9"
    undo(source, state, "undo-1", "run-1", dry_run=False)
    errors = {r["error"] for r in state.audit.rows("fake", run_id="undo-1") if r["status"] == "conflict"}
    assert errors == {"changed since run run-1: grade"}
    # An undo preview applied later by its plan id names the same run.
    run(source, state, "run-2")
    undo(source, state, "undo-preview", "run-2", dry_run=True)
    held["a"]["grade"] = "7"
    run(reviewed_source(source, state, "undo-preview"), state, "apply-undo")
    rows = state.audit.rows("fake", run_id="apply-undo")
    assert {r["error"] for r in rows if r["status"] == "conflict"} == {"changed since run run-2: grade"}


def killed_run(state: SyncStateStore, held: dict[str, dict[str, Value]]) -> DictSource:
    """``run-1`` wrote a and b (audited), then was killed while c and d's batch landed in the target: that
    batch is still in flight."""
    source = DictSource(held, {key: WANTED.get(key, {"grade": "2"}) for key in ("a", "b")})
    run(source, state, "run-1")
    in_flight = [
        PlannedRecord(key, Action.UPDATE, {"grade": "2"}, (FieldChange("grade", "1", "2"),)) for key in "cd"
    ]
    state.write_ahead.begin("run-1", "fake", in_flight)
    for key in "cd":
        held[key] = {"grade": "2"}  # the PUTs landed; their outcome was never recorded
    return source


def test_an_undo_of_a_killed_run_settles_its_batch_in_flight_first_and_reverses_it_too(
    state: SyncStateStore,
) -> None:
    held = {key: {"grade": "1"} for key in "abcd"}
    source = killed_run(state, held)

    preview = undo(source, state, "undo-preview", "run-1", dry_run=True)
    assert preview.plan.counts()["update"] == 4  # the changes in flight too, found applied
    assert state.settlement.pending("fake")  # a preview settles nothing
    assert held == {key: {"grade": "2"} for key in "abcd"}

    undo(source, state, "undo-1", "run-1", dry_run=False)
    assert held == {key: {"grade": "1"} for key in "abcd"}
    assert state.settlement.pending("fake") == {}
    settled = [
        r for r in state.audit.rows("fake", "run-1") if r["error"] == "settled after an interrupted run"
    ]
    assert {(r["record_key"], r["status"]) for r in settled} == {("c", "applied"), ("d", "applied")}


def test_an_undo_of_a_run_killed_in_its_first_batch_is_not_refused_as_having_applied_nothing(
    state: SyncStateStore,
) -> None:
    held = {key: {"grade": "1"} for key in "cd"}
    in_flight = [
        PlannedRecord(key, Action.UPDATE, {"grade": "2"}, (FieldChange("grade", "1", "2"),)) for key in "cd"
    ]
    state.write_ahead.begin("run-1", "fake", in_flight)
    held["c"] = {"grade": "2"}  # one PUT landed before the kill
    source = DictSource(held, {})
    undo(source, state, "undo-1", "run-1", dry_run=False)
    assert held == {"c": {"grade": "1"}, "d": {"grade": "1"}}


def test_an_undo_refuses_when_a_change_in_flight_cannot_be_read_back(state: SyncStateStore) -> None:
    held = {key: {"grade": "1"} for key in "abcd"}
    source = killed_run(state, held)
    source.unreadable = {"d"}
    with pytest.raises(
        PlanRefused, match="'run-1': 1 change\\(s\\) that run left in flight could not be read"
    ) as refused:
        undo(source, state, "undo-1", "run-1", dry_run=False)
    assert "\n" not in str(refused.value)
    assert held["a"] == {"grade": "2"}  # nothing undone


def test_a_plan_dated_in_the_future_is_refused_naming_the_clock_skew(state: SyncStateStore) -> None:
    source = DictSource({k: dict(v) for k, v in HELD.items()}, WANTED)
    run(source, state, "dry-1", dry_run=True)

    def dated(delta: timedelta) -> None:
        with state.engine.begin() as connection:
            connection.execute(sa.update(saved_plans).values(created_at=datetime.now(timezone.utc) + delta))

    dated(timedelta(minutes=2))  # a small difference between clocks is allowed
    assert reviewed_source(source, state, "dry-1").records
    dated(timedelta(days=3))
    with pytest.raises(
        PlanRefused, match="'dry-1' is dated 4320 minutes in the future.*clock skew"
    ) as refused:
        reviewed_source(source, state, "dry-1")
    assert "\n" not in str(refused.value)
