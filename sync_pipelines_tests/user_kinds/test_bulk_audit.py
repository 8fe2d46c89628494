"""The engine's set-based audit writes on PostgreSQL leave exactly the rows its portable path leaves."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_pipelines.core.database import create_database_engine, pg_text_array
from sync_pipelines.sync import SyncStateStore
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord

pytestmark = pytest.mark.integration

RECORDS = [
    PlannedRecord("u1", Action.UPDATE, {"kind": "aucun"}, (FieldChange("kind", None, "aucun"),)),
    PlannedRecord(
        "u2",
        Action.UPDATE,
        {"kind": "prestataire, gestionnaire"},
        (FieldChange("kind", "gestionnaire", "prestataire, gestionnaire"),),
    ),
    PlannedRecord('u"3\\', Action.UPDATE, {"kind": "x"}, (FieldChange("kind", 'a "quoted" {value}', "x"),)),
    # Tabs, line breaks and backslashes are COPY's own syntax; a lone "\." line would end its data.
    PlannedRecord(
        "u4\tcol\\N",
        Action.UPDATE,
        {"kind": "line\nbreak\r\n\\.\n"},
        (FieldChange("kind", ["a\tlist", 2, None], "line\nbreak\r\n\\.\n"),),
    ),
]


def audit(store: SyncStateStore) -> list[dict[str, Any]]:
    batch_id = store.write_ahead.begin("run-1", "user_kinds", RECORDS)
    pending = store.settlement.pending("user_kinds")
    store.write_ahead.finish(
        "run-1",
        "user_kinds",
        RECORDS,
        {"u2": "no such user in ZLV any more", "u4\tcol\\N": "refused:\n\\N\ttab"},
        False,
        batch_id,
    )
    rows = store.audit.rows("user_kinds")
    assert pending == {
        "u1": {"kind": "aucun"},
        "u2": {"kind": "prestataire, gestionnaire"},
        'u"3\\': {"kind": "x"},
        "u4\tcol\\N": {"kind": "line\nbreak\r\n\\.\n"},
    }
    return [{k: v for k, v in row.items() if k not in ("id", "recorded_at", "batch_id")} for row in rows]


def test_postgresql_audit_rows_equal_sqlite_ones(make_pg_url, tmp_path) -> None:
    on_postgresql = audit(SyncStateStore.from_url(make_pg_url()))
    on_sqlite = audit(SyncStateStore.from_url(f"sqlite:///{tmp_path / 'state.sqlite'}"))
    assert sorted(on_postgresql, key=str) == sorted(on_sqlite, key=str)
    statuses = {row["record_key"]: (row["status"], row["error"]) for row in on_postgresql}
    assert statuses == {
        "u1": ("applied", None),
        "u2": ("failed", "no such user in ZLV any more"),
        'u"3\\': ("applied", None),
        "u4\tcol\\N": ("failed", "refused:\n\\N\ttab"),
    }


def test_pg_text_array_quotes_every_element() -> None:
    values = ["a", "b, c", None, 'say "hi"', r"back\slash"]
    assert pg_text_array(values) == r'{"a","b, c",NULL,"say \"hi\"","back\\slash"}'
    assert pg_text_array(["id-1", "a b, {c}", ""]) == '{"id-1","a b, {c}",""}'  # nothing to escape
    assert pg_text_array(iter([])) == "{}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        # Text PostgreSQL can hold: no NUL, no lone surrogates (source rows with either are rejected earlier).
        st.one_of(st.none(), st.text(alphabet=st.characters(exclude_characters="\x00", codec="utf-8"))),
        max_size=8,
    )
)
def test_pg_text_array_round_trips_through_postgresql(pg_url: str, values: list[str | None]) -> None:
    """Either path (plain values, or values to escape) gives back exactly the list it was given."""
    with create_database_engine(pg_url, "TEST").connect() as connection:
        parsed = connection.execute(
            sa.text("SELECT CAST(:a AS text[])"), {"a": pg_text_array(values)}
        ).scalar()
    assert parsed == values
