"""The engine's set-based audit writes on PostgreSQL leave exactly the rows its portable path leaves."""

from __future__ import annotations

from typing import Any

from sync_pipelines.core.database import pg_text_array
from sync_pipelines.sync import SyncStateStore
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord

RECORDS = [
    PlannedRecord("u1", Action.UPDATE, {"kind": "aucun"}, (FieldChange("kind", None, "aucun"),)),
    PlannedRecord(
        "u2",
        Action.UPDATE,
        {"kind": "prestataire, gestionnaire"},
        (FieldChange("kind", "gestionnaire", "prestataire, gestionnaire"),),
    ),
    PlannedRecord('u"3\\', Action.UPDATE, {"kind": "x"}, (FieldChange("kind", 'a "quoted" {value}', "x"),)),
]


def audit(store: SyncStateStore) -> list[dict[str, Any]]:
    batch_id = store.begin_batch("run-1", "user_kinds", RECORDS)
    pending = store.pending("user_kinds")
    store.finish_batch(
        "run-1", "user_kinds", RECORDS, {"u2": "no such user in ZLV any more"}, False, batch_id
    )
    rows = store.audit_rows("user_kinds")
    assert pending == {
        "u1": {"kind": "aucun"},
        "u2": {"kind": "prestataire, gestionnaire"},
        'u"3\\': {"kind": "x"},
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
    }


def test_pg_text_array_quotes_every_element() -> None:
    values = ["a", "b, c", None, 'say "hi"', r"back\slash"]
    assert pg_text_array(values) == r'{"a","b, c",NULL,"say \"hi\"","back\\slash"}'
