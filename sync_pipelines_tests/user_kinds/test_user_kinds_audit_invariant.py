"""``user_kinds`` on Portail DF's sandbox and ZLV on PostgreSQL: a reviewed plan writes ``kind`` alone (a hand
edit of another column of the same user stays), and, for random interleavings of runs and edits, the columns
ZLV changed are exactly each run's audited ``applied`` rows (``updated_at``, stamped by a write, aside)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import strategies as st

from sync_pipelines.defs.user_kinds.mapping import KINDS
from sync_pipelines.sync.state import SyncStateStore, default_state_url
from sync_pipelines_tests.harness.audit_invariant import (
    Snapshot,
    SyncUnderTest,
    assert_audit_matches,
    check_every_run,
)
from sync_pipelines_tests.user_kinds.conftest import ZlvWorld, make_world
from sync_pipelines_tests.user_kinds.test_user_kinds_plans_and_undo import summary, undo

pytestmark = pytest.mark.integration

TARGET = "user_kinds"
BOOKKEEPING = ("updated_at",)
EXAMPLES, STEPS = 5, 6


@pytest.fixture
def world(pg_url: str) -> Iterator[ZlvWorld]:
    yield from make_world(pg_url, "v2", size=40)


def snapshot(world: ZlvWorld) -> Snapshot:
    """Every column of every user."""
    with world.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM users")).mappings().all()
    return {str(row["id"]): {name: value for name, value in row.items() if name != "id"} for row in rows}


def audit(run_id: str) -> list[dict[str, Any]]:
    return SyncStateStore.from_url(default_state_url()).audit.rows(TARGET, run_id=run_id)


def edit_by_hand(world: ZlvWorld, user_id: str, column: str, value: str | None) -> None:
    with world.engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE users SET {column} = :value WHERE id = :id"), {"value": value, "id": user_id}
        )


def test_a_reviewed_plan_leaves_a_hand_edit_of_another_column_alone(world: ZlvWorld) -> None:
    initial = world.kinds()
    changing = sorted(key for key, kind in world.expected_kinds().items() if kind != initial[key])
    user = changing[0]
    dry = world.run({"dry_run": True})
    assert dry.success
    edit_by_hand(world, user, "first_name", "HAND-EDIT")

    before = snapshot(world)
    applied = world.run({"apply_plan_id": summary(dry)["plan_id"]})
    assert applied.success, applied.all_events
    after = snapshot(world)
    assert after[user]["kind"] == world.expected_kinds()[user]
    assert after[user]["first_name"] == "HAND-EDIT"
    rows = audit(applied.run_id)
    assert {(r["field"], r["status"]) for r in rows if r["record_key"] == user} == {("kind", "applied")}
    assert_audit_matches(before, after, rows, BOOKKEEPING)

    undone = undo(world, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    assert (snapshot(world)[user]["kind"], snapshot(world)[user]["first_name"]) == (
        initial[user],
        "HAND-EDIT",
    )


def test_every_change_zlv_holds_is_an_audited_applied_row(world: ZlvWorld) -> None:
    users = sorted(world.kinds())
    found = [world.sample.user(key).email for key in world.sample.cases.get("found", []) if key in users]
    assert found

    def edit(user: str, column: str, value: str | None) -> Callable[[], None]:
        return lambda: edit_by_hand(world, user, column, value)

    def flags(email: str, exterieur: bool, gestionnaire: bool) -> Callable[[], None]:
        change = {"exterieur": exterieur, "gestionnaire": gestionnaire}
        return lambda: world.handle.change_state(
            {"action": "set_record_fields", "email": email, "fields": change}
        )

    sync = SyncUnderTest(
        run=world.run,
        undo=lambda run_id, dry_run: undo(world, run_id, dry_run=dry_run),
        snapshot=lambda: snapshot(world),
        audit=audit,
        edits=st.one_of(
            st.builds(
                edit, st.sampled_from(users), st.just("kind"), st.sampled_from([*KINDS, "manual", None])
            ),
            st.builds(
                edit, st.sampled_from(users), st.sampled_from(["first_name", "phone"]), st.just("HAND")
            ),
        ),
        source_changes=st.builds(flags, st.sampled_from(found), st.booleans(), st.booleans()),
        ignored=BOOKKEEPING,
    )
    check_every_run(sync, examples=EXAMPLES, steps=STEPS)
    assert sync.steps
