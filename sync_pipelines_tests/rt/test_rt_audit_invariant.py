"""``rt_user_sync`` on the RT sandbox: a reviewed plan writes its own fields only (a hand edit of another field
stays), a plain run sends only the changed fields, and, for random interleavings of runs and edits, the fields
RT changed are exactly each run's audited ``applied`` rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from devkit.sandbox.databases import seed_students
from devkit.sandbox.rt import DEFAULT_TOKEN
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.harness.audit_invariant import (
    Snapshot,
    SyncUnderTest,
    assert_audit_matches,
    check_every_run,
)
from sync_pipelines_tests.rt.test_rt_plans_and_undo import summary, undo
from sync_pipelines_tests.rt.test_rt_sync import RtWorld, rt_world

pytestmark = pytest.mark.integration

TARGET = "rt_user_custom_fields"
# Interleavings tried, and steps in each (each step a run of the job, an edit or a change of a student).
EXAMPLES, STEPS = 6, 6


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch, size=12) as world:
        yield world


def snapshot(world: RtWorld) -> Snapshot:
    """Every user's every custom field (the sync's two and the others), a single value as itself."""
    return {
        key: {name: values[0] if len(values) == 1 else values or None for name, values in fields.items()}
        for key, fields in ((key, user["CustomFields"]) for key, user in world.rt.state()["users"].items())
    }


def audit(world: RtWorld, run_id: str) -> list[dict[str, Any]]:
    return SyncStateStore.from_url(world.state_url).audit.rows(TARGET, run_id=run_id)


def edit_by_hand(world: RtWorld, user_id: int, field: str, value: str) -> None:
    """What a person does in RT's UI: one field of one user."""
    answer = httpx.put(
        f"{world.rt.url}/REST/2.0/user/{user_id}",
        json={"CustomFields": {field: value}},
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    assert answer.status_code == 200, answer.text


def set_grade(world: RtWorld, user_id: int, grade: str) -> None:
    """The student of RT user ``user_id`` moves to ``grade`` in the student information system."""
    world.students = [replace(s, grade=grade) if s.rt_user_id == user_id else s for s in world.students]
    seed_students(world.students_url, world.students, schema="django")


def first_user(world: RtWorld) -> int:
    return next(s.rt_user_id for s in world.students if s.rt_user_id is not None)


def test_a_reviewed_plan_leaves_a_hand_edit_of_another_field_alone(world: RtWorld) -> None:
    user = first_user(world)
    set_grade(world, user, "2")
    assert world.run().success
    set_grade(world, user, "12")
    dry = world.run({"dry_run": True})
    assert dry.success and summary(dry)["planned_field_changes"] == 1  # Grade 2 -> 12, nothing else
    edit_by_hand(world, user, "Student ID", "HAND-EDIT")

    before = snapshot(world)
    applied = world.run({"apply_plan_id": summary(dry)["plan_id"]})
    assert applied.success, applied.all_events
    after = snapshot(world)
    assert (after[str(user)]["Grade"], after[str(user)]["Student ID"]) == ("12", "HAND-EDIT")
    rows = audit(world, applied.run_id)
    assert [(r["record_key"], r["field"], r["old_value"], r["new_value"], r["status"]) for r in rows] == [
        (str(user), "Grade", "2", "12", "applied")
    ]
    assert_audit_matches(before, after, rows)

    undone = undo(world, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    held = snapshot(world)[str(user)]
    assert (held["Grade"], held["Student ID"]) == ("2", "HAND-EDIT")


def test_a_plain_run_sends_only_the_changed_field(world: RtWorld) -> None:
    user = first_user(world)
    assert world.run().success
    edit_by_hand(world, user, "Student ID", "HAND-EDIT")  # not seen: the run compares with what it last wrote
    set_grade(world, user, "12" if snapshot(world)[str(user)]["Grade"] != "12" else "11")
    before = snapshot(world)
    result = world.run()
    assert result.success
    after = snapshot(world)
    assert after[str(user)]["Student ID"] == "HAND-EDIT"
    assert_audit_matches(before, after, audit(world, result.run_id))


def test_a_plain_run_audits_the_value_rt_held_not_the_one_it_last_wrote(world: RtWorld) -> None:
    """An undo leaves the project remembering the value it restored; someone then edits that field by hand. The
    next run's write replaces the hand edit: its audited old value is the hand edit, so undoing it brings that
    back."""
    user, key = first_user(world), str(first_user(world))
    edit_by_hand(world, user, "Student ID", "11")
    first = world.run()
    assert first.success
    assert snapshot(world)[key]["Student ID"] != "11"
    undone = undo(world, first.run_id, dry_run=False)
    assert undone.success and snapshot(world)[key]["Student ID"] == "11"  # remembered as last written
    edit_by_hand(world, user, "Student ID", "HAND-EDIT")

    before = snapshot(world)
    rerun = world.run()
    assert rerun.success
    after = snapshot(world)
    rows = audit(world, rerun.run_id)
    assert ("Student ID", "HAND-EDIT", "applied") in [
        (r["field"], r["old_value"], r["status"]) for r in rows if r["record_key"] == key
    ]
    assert_audit_matches(before, after, rows)
    assert undo(world, rerun.run_id, dry_run=False).success
    assert snapshot(world)[key]["Student ID"] == "HAND-EDIT"


def test_every_change_rt_holds_is_an_audited_applied_row(world: RtWorld) -> None:
    # A few users, so that edits, changed students and plans often meet on the same user.
    users = sorted(s.rt_user_id for s in world.students if s.rt_user_id is not None)[:2]
    values = st.sampled_from(["K", "2", "11", "12", "HAND-EDIT", "IT"])

    def edit(user: int, field: str, value: str) -> Callable[[], None]:
        return lambda: edit_by_hand(world, user, field, value)

    def move(user: int, grade: str) -> Callable[[], None]:
        return lambda: set_grade(world, user, grade)

    sync = SyncUnderTest(
        run=world.run,
        undo=lambda run_id, dry_run: undo(world, run_id, dry_run=dry_run),
        snapshot=lambda: snapshot(world),
        audit=lambda run_id: audit(world, run_id),
        edits=st.builds(
            edit, st.sampled_from(users), st.sampled_from(["Grade", "Student ID", "Department"]), values
        ),
        source_changes=st.builds(move, st.sampled_from(users), st.sampled_from(["K", "2", "11", "12"])),
    )
    check_every_run(sync, examples=EXAMPLES, steps=STEPS)
    assert sync.steps
