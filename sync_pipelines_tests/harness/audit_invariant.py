"""The audit matches the target: the fields a run changed are exactly its audited ``applied`` rows.

One checker for every sync and every kind of run (plain runs, reviewed plans, undos): a snapshot of the target
is taken before and after the run (``{record key: {field: value}}``, ``None`` for a record the target does not
hold), and compared with the run's rows in ``sync_audit``. A field that changed without an ``applied`` row is a
write nobody can undo; an ``applied`` row whose field did not change to its new value is an audit without a
write. A record the run created counts as written in every field it audited.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)

from sync_pipelines.sync.plan import Value, values_equal
from sync_pipelines.sync.state import APPLIED

Snapshot = Mapping[str, Mapping[str, Value] | None]
# Interleavings each property test tries instead of its own number (the suite's are few, to keep it fast).
INTERLEAVINGS_VARIABLE = "SYNC_TEST_INTERLEAVINGS"


def _same(a: Value, b: Value) -> bool:
    blank = (None, "", [])
    return values_equal(None if a in blank else a, None if b in blank else b)


def changed_fields(before: Snapshot, after: Snapshot, ignored: Iterable[str] = ()) -> set[tuple[str, str]]:
    """``(record, field)`` for every field whose value differs between the snapshots of records held before
    (``ignored``: bookkeeping columns a write stamps, such as ``updatedAt``). A record created in between is the
    audit's to describe: the columns its table filled by default were not written by the sync."""
    skip = set(ignored)
    changed = set()
    for key in set(before) | set(after):
        if before.get(key) is None and after.get(key) is not None:
            continue
        old, new = before.get(key) or {}, after.get(key) or {}
        for name in (set(old) | set(new)) - skip:
            if not _same(old.get(name), new.get(name)):
                changed.add((key, name))
    return changed


def audit_mismatches(
    before: Snapshot, after: Snapshot, audit: Iterable[Mapping[str, Any]], ignored: Iterable[str] = ()
) -> list[str]:
    """What breaks the invariant between one run's snapshots and its audit rows, one line each (empty: none)."""
    applied = [row for row in audit if row["status"] == APPLIED]
    audited = {(row["record_key"], row["field"]) for row in applied}
    changed = changed_fields(before, after, ignored)
    problems = [
        f"{key} {name}: changed without an applied audit row" for key, name in sorted(changed - audited)
    ]
    created = {key for key in after if before.get(key) is None and after.get(key) is not None}
    problems += [
        f"{key}: created without an applied audit row" for key in sorted(created - {k for k, _ in audited})
    ]
    for row in applied:
        key, name = row["record_key"], row["field"]
        old, new = before.get(key), after.get(key)
        if new is None or not _same(new.get(name), row["new_value"]):
            held = None if new is None else new.get(name)
            problems.append(
                f"{key} {name}: audited applied -> {row['new_value']!r}, the target holds {held!r}"
            )
        elif key not in created and (key, name) not in changed:
            problems.append(f"{key} {name}: audited applied, the target did not change")
        elif key not in created and not _same((old or {}).get(name), row["old_value"]):
            problems.append(
                f"{key} {name}: audited old {row['old_value']!r}, the target held {(old or {}).get(name)!r}"
            )
    return problems


def assert_audit_matches(
    before: Snapshot, after: Snapshot, audit: Iterable[Mapping[str, Any]], ignored: Iterable[str] = ()
) -> None:
    problems = audit_mismatches(before, after, list(audit), ignored)
    assert not problems, "the audit does not match the target:\n" + "\n".join(problems)


# -- the property test: random interleavings of runs and edits, the invariant checked after every run ---------
@dataclass
class SyncUnderTest:
    """One sync as the property test drives it. ``run`` starts the sync asset's job with its op config;
    ``undo`` its undo job (``run_id``, ``dry_run``); ``snapshot`` reads the target; ``audit`` a run's audit rows;
    ``edits`` draws an edit made behind the sync's back (on any field, the sync's own or not), and
    ``source_changes`` a change in the system the sync reads from."""

    run: Callable[[dict[str, Any]], dg.ExecuteInProcessResult]
    undo: Callable[[str, bool], dg.ExecuteInProcessResult]
    snapshot: Callable[[], Snapshot]
    audit: Callable[[str], list[dict[str, Any]]]
    edits: st.SearchStrategy[Callable[[], None]]
    source_changes: st.SearchStrategy[Callable[[], None]]
    ignored: tuple[str, ...] = ()
    steps: list[str] = field(default_factory=list)  # the kind of every run checked, in order


def check_every_run(sync: SyncUnderTest, *, examples: int, steps: int) -> None:
    """Random interleavings of dry runs, edits behind the sync's back, changes in the source, plain runs, applied
    plans (dry runs' and undo previews'), undos and undos of undos; after every run, ``assert_audit_matches``.
    The world carries over from one example to the next: every run is judged on its own before and after.
    ``SYNC_TEST_INTERLEAVINGS`` replaces ``examples`` for a deeper search (after a change to the plan, the audit
    or a writer). Prints what it checked (``8 interleavings, 9 runs checked: dry run 4, run 2, ..., in 12 s``)."""
    started = time.monotonic()
    examples = int(os.environ.get(INTERLEAVINGS_VARIABLE) or examples)

    class Interleavings(RuleBasedStateMachine):
        plans = Bundle("plans")
        runs = Bundle("runs")

        def _checked(self, kind: str, start: Callable[[], dg.ExecuteInProcessResult], of: str = "") -> str:
            before = sync.snapshot()
            result = start()
            after = sync.snapshot()
            sync.steps.append(kind)
            assert result.success, f"{kind} {of}".strip() + f" failed: {_failure(result)}"
            assert_audit_matches(before, after, sync.audit(result.run_id), sync.ignored)
            return result.run_id

        @initialize(target=plans)
        def first_dry_run(self) -> str:
            # Every interleaving has a plan to apply from its start.
            return self._checked("dry run", lambda: sync.run({"dry_run": True}))

        @rule(target=plans)
        def dry_run(self) -> str:
            return self._checked("dry run", lambda: sync.run({"dry_run": True}))

        @rule(edit=sync.edits)
        def edit_behind_the_syncs_back(self, edit: Callable[[], None]) -> None:
            edit()

        @rule(change=sync.source_changes)
        def change_the_source(self, change: Callable[[], None]) -> None:
            change()

        @rule(target=runs, full_refresh=st.booleans())
        def plain_run(self, full_refresh: bool) -> str:
            return self._checked("run", lambda: sync.run({"full_refresh": full_refresh}))

        @rule(target=runs, plan=plans)
        def apply_plan(self, plan: str) -> str:
            return self._checked("apply", lambda: sync.run({"apply_plan_id": plan}), plan)

        @rule(target=runs, run=runs)
        def undo(self, run: str) -> Any:
            if not [row for row in sync.audit(run) if row["status"] == APPLIED]:
                return multiple()  # nothing to undo: the undo job refuses such a run
            return self._checked("undo", lambda: sync.undo(run, False), run)

        @rule(target=plans, run=runs)
        def undo_preview(self, run: str) -> Any:
            if not [row for row in sync.audit(run) if row["status"] == APPLIED]:
                return multiple()
            return self._checked("undo preview", lambda: sync.undo(run, True), run)

    run_state_machine_as_test(
        Interleavings,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
    kinds = ", ".join(f"{kind} {count}" for kind, count in Counter(sync.steps).most_common())
    print(
        f"{examples} interleavings, {len(sync.steps)} runs checked: {kinds}, in {time.monotonic() - started:.0f} s"
    )


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            return event.step_failure_data.error.message.splitlines()[0]
    return "(no step failure)"
