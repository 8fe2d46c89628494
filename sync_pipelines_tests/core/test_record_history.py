"""Record history's pure parts: what a planned run keeps, how runs are named, the order and folding of events,
why the two systems differ, and personal values kept out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.outcome import Current, Desired, PlannedRun, SyncOutcome
from sync_pipelines.sync.outcome_store import AUDITED, OUTCOME, HistoryRow, RunRecord
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord, SyncPlan
from sync_pipelines.sync.record_history import (
    PERSONAL_CHANGE,
    HistoryEvent,
    RecordHistory,
    RecordNow,
    Subject,
    fields_now,
    fold,
    history_events,
    outcomes_of,
    why_they_differ,
)
from sync_pipelines.sync.settlement import Settlement

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PERSONAL = Disclosure(personal={"User": ("name",)})


def planned(records: list[PlannedRecord], failing: dict[str, str] | None = None) -> PlannedRun:
    plan = SyncPlan("t", records)
    outcome = SyncOutcome("t", plan, Desired({}), Current({}), Settlement("t", []), False)
    return PlannedRun(outcome, unusable=failing or {})


def event(run: str, status: str, field: str | None = "kind", minutes: int = 0, **values) -> HistoryEvent:
    defaults = {"key": "1", "old": "a", "new": "b", "category": None, "reason": None, "kind": "sync"}
    defaults.update(values)
    return HistoryEvent(
        T0 + timedelta(minutes=minutes), run, defaults.pop("kind"), field=field, status=status, **defaults
    )


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (RunRecord("r", "t", False), "sync"),
        (RunRecord("r", "t", True), "dry run"),
        (RunRecord("r", "t", False, plan_id="p"), "apply of plan p"),
        (RunRecord("r", "t", False, plan_id="p", undo_of="u"), "apply of plan p (undo of run u)"),
        (RunRecord("r", "t", False, undo_of="u"), "undo of run u"),
        (RunRecord("r", "t", True, undo_of="u"), "undo preview of run u"),
    ],
)
def test_a_run_is_named_by_its_kind(record: RunRecord, kind: str) -> None:
    assert record.kind == kind


def test_a_run_keeps_its_skips_and_row_errors_and_a_dry_run_its_plan_without_personal_values() -> None:
    records = [
        PlannedRecord("User:1", Action.UPDATE, {"name": "Eva", "classId": "c2"},
                      (FieldChange("name", "Eva", "Eve"), FieldChange("classId", "c1", "c2"))),
        PlannedRecord("User:2", Action.SKIP, category="needs_login", reason="token expired"),
        PlannedRecord("User:3", Action.SKIP, category="read_failed", reason="HTTP 502"),
        PlannedRecord("User:4", Action.SKIP, category="conflict", reason="changed since the plan: name"),
        PlannedRecord("User:5", Action.UNCHANGED, {"name": "Ida"}),
    ]  # fmt: skip
    run = planned(records, failing={"User:3": "HTTP 502", "User:9": "invalid answer"})
    real = {(o.key, o.outcome, o.category, o.reason) for o in outcomes_of(run, False, PERSONAL)}
    assert real == {
        ("User:2", "skipped", "needs_login", "token expired"),
        ("User:3", "row_error", "read_failed", "HTTP 502"),
        ("User:9", "row_error", None, "invalid answer"),
    }  # a real run's writes and conflicts are audited; unchanged records are not kept
    dry = outcomes_of(run, True, PERSONAL)
    changes = {(o.key, o.field, o.old, o.new) for o in dry if o.outcome == "planned"}
    assert changes == {
        ("User:1", "name", "(personal data, not shown)", "(personal data, not shown)"),
        ("User:1", "classId", "c1", "c2"),
    }
    assert ("User:4", "skipped") in {(o.key, o.outcome) for o in dry}


def test_events_come_in_run_order_what_was_decided_before_what_was_written() -> None:
    rows = [
        HistoryRow(AUDITED, 1, "late", "1", "kind", "a", "b", "applied", None, None, T0 + timedelta(days=1)),
        HistoryRow(AUDITED, 7, "early", "1", "kind", "b", "c", "failed", None, "refused", T0 + timedelta(minutes=2)),
        HistoryRow(OUTCOME, 9, "early", "S1", None, None, None, "skipped", "no_rt_user", "x", T0),
        HistoryRow(AUDITED, 3, "unknown", "1", "kind", "c", "d", "applied", None, None, T0 + timedelta(days=2)),
    ]  # fmt: skip
    runs = {
        "early": RunRecord("early", "t", False, recorded_at=T0),
        "late": RunRecord("late", "t", False, undo_of="early", recorded_at=T0 + timedelta(days=1)),
    }
    events = history_events(rows, runs)
    assert [(e.run_id, e.status) for e in events] == [
        ("early", "skipped"),
        ("early", "failed"),
        ("late", "applied"),
        ("unknown", "applied"),
    ]
    assert [e.kind for e in events] == ["sync", "sync", "undo of run early", "run (its kind was not kept)"]


def test_repeated_skips_fold_into_one_line_and_a_change_breaks_the_fold() -> None:
    same = dict(field=None, category="not_found", reason="no account")
    events = [
        event("r1", "skipped", **same),
        event("r2", "skipped", **same),
        event("r3", "skipped", **same),
        event("r4", "skipped", field=None, category="not_found", reason="other"),
        event("r5", "applied"),
        event("r6", "applied"),
    ]
    assert [(first.run_id, last.run_id, count) for first, last, count in fold(events)] == [
        ("r1", "r3", 3),
        ("r4", "r4", 1),
        ("r5", "r5", 1),
        ("r6", "r6", 1),
    ]
    shown = RecordHistory("t", Subject("x", ("1",)), events, [], Disclosure())
    assert "| 3 runs: r1 to r3 | sync |" in shown.events_table()
    assert "[r1](/runs/r1)" in shown.events_table(lambda run: f"[{run}](/runs/{run})")
    assert "1 earlier line(s) not shown" in shown.events_table(limit=3)


WANTED = RecordNow({"kind": "old"}, wanted={"kind": "new"})


@pytest.mark.parametrize(
    ("now", "latest", "written", "remembers", "why"),
    [
        (RecordNow({"kind": "a"}, row_error="bad answer"), None, None, False, "row error: "),
        (RecordNow({"kind": "a"}, target_unread="HTTP 502"), None, None, False, "t could not be read now: HTTP 502"),
        (RecordNow({"kind": "a"}, not_wanted="not_found: none"), None, None, False, "skipped: not_found: none"),
        (WANTED, event("r", "conflict", reason="changed since the plan: kind"), None, False,
         "conflict in run r (sync): changed since the plan: kind"),
        (WANTED, event("r", "failed", reason="refused"), None, False, "row error in run r: refused"),
        (WANTED, event("r", "skipped", field=None, category="c", reason="why"), None, False, "skipped by run r: c: why"),
        (WANTED, event("r", "applied", new="new"), ("new", "r"), True,
         "changed in t after run r wrote it (a hand edit?); runs compare with what they last wrote, so only a run "
         "with full_refresh: true writes it again"),
        (WANTED, event("r", "applied", new="new"), None, False,
         "changed in t after run r wrote it (a hand edit?); the next run writes it again"),
        (WANTED, event("r", "applied", new="older"), None, False, "awaiting the next run: the source changed after run r"),
        (WANTED, event("r", "planned"), None, False, "awaiting the next run: dry run r planned it"),
        (WANTED, None, None, False, "awaiting the next run: no run has planned or written this field yet"),
    ],
)  # fmt: skip
def test_why_the_two_systems_differ(now, latest, written, remembers, why) -> None:
    assert why_they_differ(now, "kind", latest, written, "t", remembers).startswith(why)


def test_fields_now_compares_field_by_field_and_says_when_a_side_has_nothing() -> None:
    subject = Subject(
        "x",
        ("1", "2", "S1"),
        {
            "1": RecordNow({"Grade": "9", "Student ID": "S1"}, wanted={"Grade": "10", "Student ID": "S1"}),
            "2": RecordNow({"Grade": "7"}, not_wanted="no student has rt_user_id 2 now"),
            "S1": RecordNow(note="synced as RT user 1"),
        },
    )
    rows = {(r.key, r.field): r for r in fields_now(subject, [], {}, "rt", True)}
    assert rows[("1", "Student ID")].why == "in step"
    assert rows[("1", "Grade")].why.startswith("awaiting the next run")
    assert (rows[("2", "Grade")].holds, rows[("2", "Grade")].wants) == (True, False)
    assert rows[("S1", None)].why == "synced as RT user 1"
    shown = RecordHistory("rt", subject, [], list(rows.values()), Disclosure()).now_table()
    assert "| 2 | Grade | 7 | — | skipped: no student has rt_user_id 2 now |" in shown
    assert "| S1 | — | — | — | synced as RT user 1 |" in shown


def test_a_personal_field_shows_only_that_it_changed() -> None:
    events = [
        event("r", "applied", field="name", key="User:1", old="Eva", new="Eve"),
        event("d", "planned", field="name", key="User:1", old="(personal data, not shown)", new="(personal data, not shown)"),
        event("r", "applied", field="classId", key="User:1", old="c1", new="c2"),
    ]  # fmt: skip
    subject = Subject("x", ("User:1",), value_names={"classId": {"c1": "7.A", "c2": "8.A"}})
    shown = RecordHistory("t", subject, events, [], PERSONAL)
    assert [shown.change(e) for e in events] == [PERSONAL_CHANGE, PERSONAL_CHANGE, "c1 (7.A) -> c2 (8.A)"]
    assert "Eva" not in shown.markdown() and "Eve" not in shown.markdown()
