"""The project's own state: an audit row per applied change, and what was last written (for delta syncs).

Lives in ``SYNC_STATE_DATABASE_URL`` (SQLite under ``$DAGSTER_HOME`` by default, PostgreSQL in production).

Audit rows are written *before* a batch is applied, as ``pending``, and settled after it (``applied`` or
``failed``). A process killed in between leaves ``pending`` rows behind; the next run settles them against
what the target really holds (``reconcile_pending``), so no committed write is ever missing from the log.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import create_database_engine, pg_text_array
from sync_pipelines.sync.plan import PlannedRecord, Value, values_equal

STATE_SETTING = "SYNC_STATE_DATABASE_URL"

metadata = sa.MetaData()

audit_log = sa.Table(
    "sync_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(36)),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("record_key", sa.String(255), nullable=False),
    sa.Column("field", sa.String(255), nullable=False),
    sa.Column("old_value", sa.Text),
    sa.Column("new_value", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # Only the rows still pending are indexed by target: settling a row drops it from this small index instead
    # of rewriting an entry in a large one, which kept the audit log from doubling the cost of a bulk write.
    sa.Index(
        "ix_sync_audit_pending",
        "target",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_sync_audit_batch", "batch_id"),
)

last_written = sa.Table(
    "sync_last_written",
    metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("record_key", sa.String(255), primary_key=True),
    sa.Column("field", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
)

PENDING, APPLIED, FAILED, NOT_APPLIED = "pending", "applied", "failed", "not_applied"

_PG_UPSERT_WRITTEN = sa.text(
    "INSERT INTO sync_last_written (target, record_key, field, value, run_id, written_at) "
    "SELECT :target, t.record_key, t.field, t.value, :run_id, :now "
    "FROM unnest(CAST(:keys AS text[]), CAST(:fields AS text[]), CAST(:values AS text[])) AS t(record_key, field, value) "
    "ON CONFLICT (target, record_key, field) DO UPDATE "
    "SET value = EXCLUDED.value, run_id = EXCLUDED.run_id, written_at = EXCLUDED.written_at"
)

_PG_INSERT_PENDING = sa.text(
    "INSERT INTO sync_audit (run_id, batch_id, target, record_key, field, old_value, new_value, status, recorded_at) "
    "SELECT :run_id, :batch_id, :target, t.record_key, t.field, t.old_value, t.new_value, 'pending', :now "
    "FROM unnest(CAST(:keys AS text[]), CAST(:fields AS text[]), CAST(:olds AS text[]), CAST(:news AS text[])) "
    "AS t(record_key, field, old_value, new_value)"
)
_CHUNK = 5000


def default_state_url() -> str:
    home = os.environ.get("DAGSTER_HOME") or str(Path.cwd() / ".dagster_home")
    Path(home).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(home) / 'sync_state.sqlite'}"


def _encode(value: Value) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _decode(text: str | None) -> Value:
    return None if text is None else json.loads(text)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


class SyncStateStore:
    """Audit log and last-written values for every target."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str | None) -> SyncStateStore:
        return cls(create_database_engine(url or default_state_url(), STATE_SETTING))

    # -- last written -------------------------------------------------------------------------------------
    def last_written(self, target: str, keys: Iterable[str] | None = None) -> dict[str, dict[str, Value]]:
        """``{record_key: {field: value}}`` as this project last wrote them to ``target``."""
        query = sa.select(last_written.c.record_key, last_written.c.field, last_written.c.value).where(
            last_written.c.target == target
        )
        wanted = set(keys) if keys is not None else None
        result: dict[str, dict[str, Value]] = {}
        with self.engine.connect() as connection:
            for key, field, value in connection.execute(query):
                if wanted is None or key in wanted:
                    result.setdefault(key, {})[field] = _decode(value)
        return result

    def remember(self, target: str, run_id: str, records: Mapping[str, Mapping[str, Value]]) -> None:
        """Record values read from the target that already match, so later delta runs need not read them again."""
        now = _now()
        rows = [
            {
                "target": target,
                "record_key": key,
                "field": field,
                "value": _encode(value),
                "run_id": run_id,
                "written_at": now,
            }
            for key, values in records.items()
            for field, value in values.items()
        ]
        with self.engine.begin() as connection:
            self._upsert_written(connection, rows)

    def forget(self, target: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(last_written).where(last_written.c.target == target))

    def _upsert_written(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect = connection.dialect.name
        first = rows[0]
        uniform = all(
            row["target"] == first["target"]
            and row["run_id"] == first["run_id"]
            and row["written_at"] == first["written_at"]
            for row in rows
        )
        if dialect == "postgresql" and uniform:
            # One set-based statement per chunk; later rows win for a (record, field) given twice.
            latest = {(row["record_key"], row["field"]): row["value"] for row in rows}
            items = list(latest.items())
            for start in range(0, len(items), 50_000):
                chunk = items[start : start + 50_000]
                connection.execute(
                    _PG_UPSERT_WRITTEN,
                    {
                        "target": first["target"],
                        "run_id": first["run_id"],
                        "now": first["written_at"],
                        "keys": pg_text_array(key for (key, _), _ in chunk),
                        "fields": pg_text_array(field for (_, field), _ in chunk),
                        "values": pg_text_array(value for _, value in chunk),
                    },
                )
            return
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        for chunk in _chunks(rows):
            statement = insert(last_written)
            statement = statement.on_conflict_do_update(
                index_elements=[last_written.c.target, last_written.c.record_key, last_written.c.field],
                set_={
                    "value": statement.excluded.value,
                    "run_id": statement.excluded.run_id,
                    "written_at": statement.excluded.written_at,
                },
            )
            connection.execute(statement, chunk)

    # -- audit --------------------------------------------------------------------------------------------
    def begin_batch(self, run_id: str, target: str, records: list[PlannedRecord]) -> str:
        """Log the batch's changes as ``pending`` before anything is sent to the target; returns the batch id."""
        batch_id = uuid.uuid4().hex
        changes = [(record.key, change) for record in records for change in record.changes]
        if not changes:
            return batch_id
        now = _now()
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # One set-based statement: an executemany of thousands of rows costs more than the target's write.
                connection.execute(
                    _PG_INSERT_PENDING,
                    {
                        "run_id": run_id,
                        "batch_id": batch_id,
                        "target": target,
                        "now": now,
                        "keys": pg_text_array(key for key, _ in changes),
                        "fields": pg_text_array(change.field for _, change in changes),
                        "olds": pg_text_array(_encode(change.old) for _, change in changes),
                        "news": pg_text_array(_encode(change.new) for _, change in changes),
                    },
                )
                return batch_id
            rows = [
                {
                    "run_id": run_id,
                    "batch_id": batch_id,
                    "target": target,
                    "record_key": key,
                    "field": change.field,
                    "old_value": _encode(change.old),
                    "new_value": _encode(change.new),
                    "status": PENDING,
                    "error": None,
                    "recorded_at": now,
                }
                for key, change in changes
            ]
            for chunk in _chunks(rows):
                connection.execute(sa.insert(audit_log), chunk)
        return batch_id

    def finish_batch(
        self,
        run_id: str,
        target: str,
        records: list[PlannedRecord],
        failures: Mapping[str, str],
        remember_written: bool,
        batch_id: str | None = None,
    ) -> None:
        """Settle the batch's pending rows: ``failed`` (with the reason) for the records that failed, ``applied``
        for the rest; with ``remember_written``, store the written records as the new last-written state."""
        now = _now()
        with self.engine.begin() as connection:
            pending = (
                (audit_log.c.run_id == run_id)
                & (audit_log.c.target == target)
                & (audit_log.c.status == PENDING)
            )
            if failures:
                # One executemany for every failed record, however many there are.
                scope = (audit_log.c.batch_id == batch_id) if batch_id is not None else pending
                connection.execute(
                    sa.update(audit_log)
                    .where(
                        scope
                        & (audit_log.c.status == PENDING)
                        & (audit_log.c.record_key == sa.bindparam("key"))
                    )
                    .values(status=FAILED, error=sa.bindparam("reason"), recorded_at=now),
                    [{"key": key, "reason": reason[:2000]} for key, reason in failures.items()],
                )
            if batch_id is not None:
                connection.execute(
                    sa.update(audit_log)
                    .where((audit_log.c.batch_id == batch_id) & (audit_log.c.status == PENDING))
                    .values(status=APPLIED, recorded_at=now)
                )
            else:
                applied_keys = [record.key for record in records if record.key not in failures]
                for start in range(0, len(applied_keys), _CHUNK):
                    connection.execute(
                        sa.update(audit_log)
                        .where(pending & audit_log.c.record_key.in_(applied_keys[start : start + _CHUNK]))
                        .values(status=APPLIED, recorded_at=now)
                    )
            if remember_written:
                # The whole desired record, not only the changed fields: the next run compares every field.
                written = [
                    {
                        "target": target,
                        "record_key": record.key,
                        "field": field,
                        "value": _encode(value),
                        "run_id": run_id,
                        "written_at": now,
                    }
                    for record in records
                    if record.key not in failures
                    for field, value in record.desired.items()
                ]
                self._upsert_written(connection, written)

    def pending(self, target: str) -> dict[str, dict[str, Value]]:
        """Changes whose outcome a killed run never recorded: ``{record_key: {field: new value}}``."""
        query = sa.select(audit_log.c.record_key, audit_log.c.field, audit_log.c.new_value).where(
            (audit_log.c.target == target) & (audit_log.c.status == PENDING)
        )
        result: dict[str, dict[str, Value]] = {}
        with self.engine.connect() as connection:
            for key, field, value in connection.execute(query):
                result.setdefault(key, {})[field] = _decode(value)
        return result

    def reconcile_pending(
        self, target: str, current: Mapping[str, Mapping[str, Value] | None], remember_written: bool
    ) -> dict[str, int]:
        """Settle pending rows from killed runs by what ``target`` holds now; returns counts per outcome."""
        outcome = {APPLIED: 0, NOT_APPLIED: 0}
        query = sa.select(
            audit_log.c.id,
            audit_log.c.run_id,
            audit_log.c.record_key,
            audit_log.c.field,
            audit_log.c.new_value,
        ).where((audit_log.c.target == target) & (audit_log.c.status == PENDING))
        now = _now()
        with self.engine.begin() as connection:
            rows = connection.execute(query).all()
            applied_ids, missing_ids, written = [], [], []
            for row_id, run_id, key, field, new_value in rows:
                held = (current.get(key) or {}).get(field)
                if current.get(key) is not None and values_equal(held, _decode(new_value)):
                    applied_ids.append(row_id)
                    written.append(
                        {
                            "target": target,
                            "record_key": key,
                            "field": field,
                            "value": new_value,
                            "run_id": run_id,
                            "written_at": now,
                        }
                    )
                else:
                    missing_ids.append(row_id)
            for ids, status in ((applied_ids, APPLIED), (missing_ids, NOT_APPLIED)):
                for start in range(0, len(ids), _CHUNK):
                    connection.execute(
                        sa.update(audit_log)
                        .where(audit_log.c.id.in_(ids[start : start + _CHUNK]))
                        .values(status=status, error="settled after an interrupted run")
                    )
                outcome[status] = len(ids)
            if remember_written:
                self._upsert_written(connection, written)
        return outcome

    def audit_rows(self, target: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_log).order_by(audit_log.c.id)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        if run_id is not None:
            query = query.where(audit_log.c.run_id == run_id)
        with self.engine.connect() as connection:
            return [
                {**row._mapping, "old_value": _decode(row.old_value), "new_value": _decode(row.new_value)}
                for row in connection.execute(query)
            ]

    def delete_audit_before(self, cutoff: datetime) -> int:
        with self.engine.begin() as connection:
            return connection.execute(sa.delete(audit_log).where(audit_log.c.recorded_at < cutoff)).rowcount
