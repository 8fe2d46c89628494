"""``bakalari_entities`` on the Bakaláři sandbox and EduRPG's Prisma schema: a reviewed plan changing two fields
of one row, one of them edited by hand since, writes the other and keeps the hand edit (audited field by field);
and, for random interleavings of runs and edits, the fields EduRPG changed are exactly each run's audited
``applied`` rows (the timestamps a write stamps, and the students' rotated tokens, aside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import strategies as st

from devkit.sandbox.bakalari import SampleSchool
from devkit.sandbox.server import ThreadedSandbox
from sync_pipelines.sync.state import SyncStateStore, default_state_url
from sync_pipelines_tests.bakalari.helpers import engine_for, observation, rows, run_sync, sync_resources
from sync_pipelines_tests.bakalari.test_bakalari_plans_and_undo import undo
from sync_pipelines_tests.harness.audit_invariant import (
    Snapshot,
    SyncUnderTest,
    assert_audit_matches,
    check_every_run,
)

pytestmark = pytest.mark.integration

TARGET = "bakalari_entities"
# Stamped by every write, or (the refresh token) rotated by every read of a student: not the plan's fields.
BOOKKEEPING = ("createdAt", "updatedAt", "bakalariToken")
KINDS = {"class": "Class", "subject": "Subject", "user": "User", "enrollment": "Enrollment"}
EXAMPLES, STEPS = 5, 6


def snapshot(engine: sa.Engine) -> Snapshot:
    """Every row the sync tracks (through its ``"ExternalRef"``), keyed as the sync keys it, with every column
    and its ref."""
    tables = {kind: {row["id"]: row for row in rows(engine, kind)} for kind in KINDS.values()}
    refs = [ref for ref in rows(engine, "ExternalRef") if ref["type"] in KINDS]
    external = {(ref["type"], ref["internalId"]): ref["externalId"] for ref in refs}
    held: dict[str, dict[str, Any] | None] = {}
    for ref in refs:
        kind = KINDS[ref["type"]]
        if kind == "Enrollment":
            pointers = ref["metadata"] or {}
            user = external.get(("user", pointers.get("userId")))
            subject = external.get(("subject", pointers.get("subjectId")))
            key = f"Enrollment:{user}-{subject}"
        else:
            key = f"{kind}:{ref['externalId']}"
        row = tables[kind].get(ref["internalId"])
        held[key] = {
            **(row or {}),
            "ref": {"internalId": ref["internalId"], "metadata": ref["metadata"]},
        }
    return held


def audit(run_id: str) -> list[dict[str, Any]]:
    return SyncStateStore.from_url(default_state_url()).audit.rows(TARGET, run_id=run_id)


def edit_by_hand(engine: sa.Engine, table: str, row_id: str, column: str, value: Any) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(f'UPDATE "{table}" SET "{column}" = :value WHERE id = :id'),
            {"value": value, "id": row_id},
        )


def test_a_plan_changing_two_fields_of_a_row_writes_the_one_not_edited_since(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    resources = sync_resources(bakalari.url, edurpg_url)
    engine = engine_for(edurpg_url)
    assert run_sync(resources).success
    renamed = school.classes[0]
    key = f"Class:{renamed.id}"
    row_id = snapshot(engine)[key]["id"]
    bakalari.change_state({"action": "rename_class", "class_id": renamed.id, "abbrev": "9.Z"})
    dry = run_sync(resources, dry_run=True)
    assert dry.success
    edit_by_hand(engine, "Class", row_id, "grade", 7)  # one of the two planned fields, by hand

    before = snapshot(engine)
    assert {before[key]["name"], before[key]["grade"]} == {renamed.abbrev, 7}
    applied = run_sync(resources, apply_plan_id=observation(dry)["plan_id"])
    assert applied.success, applied.all_events
    after = snapshot(engine)
    assert (after[key]["name"], after[key]["grade"]) == ("9.Z", 7)
    rows_of_class = [r for r in audit(applied.run_id) if r["record_key"] == key]
    # The name (and the ref's metadata, which carries the abbreviation) written; the grade set by hand kept.
    assert {(r["field"], r["status"]) for r in rows_of_class} == {
        ("name", "applied"),
        ("ref", "applied"),
        ("grade", "conflict"),
    }
    assert "| grade |" in observation(applied)["conflict_records"]
    assert_audit_matches(before, after, audit(applied.run_id), BOOKKEEPING)

    undone = undo(resources, applied.run_id, dry_run=False)
    assert undone.success, undone.all_events
    assert (snapshot(engine)[key]["name"], snapshot(engine)[key]["grade"]) == (renamed.abbrev, 7)


def test_every_change_edurpg_holds_is_an_audited_applied_row(
    bakalari: ThreadedSandbox, edurpg_url: str, school: SampleSchool
) -> None:
    resources = sync_resources(bakalari.url, edurpg_url)
    engine = engine_for(edurpg_url)
    assert run_sync(resources).success  # every row gets its "ExternalRef": the snapshots see them all
    held = snapshot(engine)
    ids = {
        kind: sorted(v["id"] for k, v in held.items() if k.startswith(f"{kind}:") and v)
        for kind in KINDS.values()
    }
    columns = {"Class": ("name", "grade"), "Subject": ("name", "code"), "User": ("name",)}
    texts = st.sampled_from(["HAND", "9.Z", "1.A"])
    edits = st.one_of(
        *(
            st.builds(
                lambda table, row_id, column, value: (
                    lambda: edit_by_hand(engine, table, row_id, column, value)
                ),
                st.just(table),
                st.sampled_from(ids[table]),
                st.sampled_from(names),
                st.integers(1, 9) if names == ("grade",) else texts,
            )
            for table, names in (
                ("Class", ("name",)),
                ("Class", ("grade",)),
                ("Subject", columns["Subject"]),
                ("User", columns["User"]),
            )
        )
    )

    def rename(class_id: str, abbrev: str) -> Callable[[], None]:
        return lambda: bakalari.change_state(
            {"action": "rename_class", "class_id": class_id, "abbrev": abbrev}
        )

    sync = SyncUnderTest(
        run=lambda config: run_sync(resources, **config),
        undo=lambda run_id, dry_run: undo(resources, run_id, dry_run=dry_run),
        snapshot=lambda: snapshot(engine),
        audit=audit,
        edits=edits,
        source_changes=st.builds(
            rename, st.sampled_from([c.id for c in school.classes]), st.sampled_from(["1.A", "2.B", "9.Z"])
        ),
        ignored=BOOKKEEPING,
    )
    check_every_run(sync, examples=EXAMPLES, steps=STEPS)
    assert sync.steps
