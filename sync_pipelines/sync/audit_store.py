"""Write-ahead and audit: a batch's changes committed before it is sent, its outcome audited when it returns,
and the values last written (for delta syncs). See ``sync.state`` for the whole scheme."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import is_postgresql, pg_text_array, upsert_into
from sync_pipelines.core.redaction import redact
from sync_pipelines.sync.plan import (
    CONFLICT,
    Conflict,
    PlannedRecord,
    Value,
    written_changes,
)
from sync_pipelines.sync.state_schema import (
    APPLIED,
    AUDIT_COLUMNS,
    FAILED,
    PG_UPSERT_WRITTEN,
    audit_log,
    batches_in_flight,
    chunks,
    copy_field,
    copy_in,
    decode_value,
    encode_value,
    last_written,
    refused_as_one_line,
    storable_text,
    stored_key,
    uses_copy,
    utc_now,
    written_row,
)

# One audit row before its run, batch, target and time: (record key, field, old, new, status, reason).
AuditEntry = tuple[str, str, str | None, str | None, str, str | None]


class WriteAheadStore:
    """The write-ahead rows, the audit log and the last written values of every target."""

    engine: Engine

    # -- last written -------------------------------------------------------------------------------------
    def last_written(self, target: str, keys: Iterable[str] | None = None) -> dict[str, dict[str, Value]]:
        """``{record_key: {field: value}}`` as this project last wrote them to ``target``."""
        query = sa.select(last_written.c.record_key, last_written.c.field, last_written.c.value).where(
            last_written.c.target == target
        )
        wanted = {stored_key(key): key for key in keys} if keys is not None else None
        result: dict[str, dict[str, Value]] = {}
        with self.engine.connect() as connection:
            for key, field, value in connection.execute(query):
                if wanted is None:
                    result.setdefault(key, {})[field] = decode_value(value)
                elif key in wanted:
                    result.setdefault(wanted[key], {})[field] = decode_value(value)
        return result

    @refused_as_one_line
    def remember(self, target: str, run_id: str, records: Mapping[str, Mapping[str, Value]]) -> None:
        """Record values read from the target that already match, so later delta runs need not read them again."""
        now = utc_now()
        rows = [
            written_row(target, key, field, value, run_id, now)
            for key, values in records.items()
            for field, value in values.items()
        ]
        with self.engine.begin() as connection:
            self._upsert_written(connection, rows)

    def _upsert_written(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        first = rows[0]
        uniform = all(
            row["target"] == first["target"]
            and row["run_id"] == first["run_id"]
            and row["written_at"] == first["written_at"]
            for row in rows
        )
        if is_postgresql(connection) and uniform:
            # One set-based statement per chunk; later rows win for a (record, field) given twice.
            latest = {(row["record_key"], row["field"]): row["value"] for row in rows}
            items = list(latest.items())
            for start in range(0, len(items), 50_000):
                chunk = items[start : start + 50_000]
                connection.execute(
                    PG_UPSERT_WRITTEN,
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
        for rows_chunk in chunks(rows):
            statement = upsert_into(connection, last_written)
            statement = statement.on_conflict_do_update(
                index_elements=[last_written.c.target, last_written.c.record_key, last_written.c.field],
                set_={
                    "value": statement.excluded.value,
                    "run_id": statement.excluded.run_id,
                    "written_at": statement.excluded.written_at,
                },
            )
            connection.execute(statement, rows_chunk)

    # -- audit --------------------------------------------------------------------------------------------
    @property
    def allows_concurrent_writes(self) -> bool:
        """Whether this store may be written from a worker thread while the caller writes to the target
        (PostgreSQL; an in-memory SQLite database is private to the thread that opened it)."""
        return is_postgresql(self.engine)

    @refused_as_one_line
    def begin_batch(self, run_id: str, target: str, records: list[PlannedRecord]) -> str:
        """Commit the batch's changes as one write-ahead row before anything is sent to the target."""
        with self.engine.begin() as connection:
            return self._write_ahead(connection, run_id, target, records)

    @staticmethod
    def _write_ahead(
        connection: sa.Connection, run_id: str, target: str, records: list[PlannedRecord]
    ) -> str:
        batch_id = uuid.uuid4().hex
        changes = [
            [record.key, change.field, change.old, change.new]
            for record in records
            for change in record.changes
        ]
        if changes:
            connection.execute(
                sa.insert(batches_in_flight).values(
                    batch_id=batch_id,
                    run_id=run_id,
                    target=target,
                    changes=json.dumps(changes, ensure_ascii=False),
                    started_at=utc_now(),
                )
            )
        return batch_id

    @refused_as_one_line
    def discard_batch(self, batch_id: str) -> None:
        """Drop a write-ahead row whose batch was never sent (the run stopped before it)."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(batches_in_flight).where(batches_in_flight.c.batch_id == batch_id))

    @refused_as_one_line
    def finish_batch(
        self,
        run_id: str,
        target: str,
        records: list[PlannedRecord],
        failures: Mapping[str, str],
        remember_written: bool,
        batch_id: str,
        next_records: list[PlannedRecord] | None = None,
    ) -> str | None:
        """Record the batch's outcome, in one transaction: an audit row per change (``failed`` with the reason
        for the records that failed, ``applied`` for the rest), the write-ahead row gone, and, with
        ``remember_written``, the written records as the new last-written state. With ``next_records``, the
        next batch is written ahead in the same transaction; returns its batch id."""
        now = utc_now()
        reasons = {key: redact(reason)[:2000] for key, reason in failures.items()} if failures else {}
        entries: list[AuditEntry] = []
        written: list[dict[str, Any]] = []
        for record in records:
            reason = failures.get(record.key)
            made = written_changes(record, reason)
            if reason is None:
                entries += [
                    (record.key, c.field, encode_value(c.old), encode_value(c.new), APPLIED, None)
                    for c in record.changes
                ]
            else:
                # Field by field: a record whose planned fields a conflict partly kept is partly applied.
                status = CONFLICT if isinstance(reason, Conflict) else FAILED
                entries += [
                    (record.key, c.field, encode_value(c.old), encode_value(c.new), APPLIED, None)
                    if c in made
                    else (
                        record.key,
                        c.field,
                        encode_value(c.old),
                        encode_value(c.new),
                        status,
                        reasons[record.key],
                    )
                    for c in record.changes
                ]
            if remember_written and (reason is None or made):
                # The whole desired record, not only the changed fields: the next run compares every field; of a
                # record partly kept by a conflict, not the fields kept (the target holds someone else's value).
                kept = (
                    set() if reason is None else {c.field for c in record.changes} - {c.field for c in made}
                )
                written += [
                    written_row(target, record.key, field, value, run_id, now)
                    for field, value in record.desired.items()
                    if field not in kept
                ]
        with self.engine.begin() as connection:
            self._append_audit(connection, (run_id, batch_id, target, now), entries)
            connection.execute(sa.delete(batches_in_flight).where(batches_in_flight.c.batch_id == batch_id))
            if remember_written:
                self._upsert_written(connection, written)
            if next_records is not None:
                return self._write_ahead(connection, run_id, target, next_records)
        return None

    @staticmethod
    def _append_audit(
        connection: sa.Connection,
        batch: tuple[str, str, str, datetime],
        entries: list[AuditEntry],
    ) -> None:
        """Append the audit rows of one batch (``run_id, batch_id, target, recorded_at``): one entry per change,
        ``(record_key, field, old_value, new_value, status, error)``. On PostgreSQL one ``COPY``, its text
        built here: an INSERT, or psycopg adapting each row, would cost more than the target's own write."""
        if not entries:
            return
        run_id, batch_id, target, recorded_at = batch
        entries = [
            (
                storable_text(key),
                storable_text(field),
                old,
                new,
                status,
                None if error is None else storable_text(error),
            )
            for key, field, old, new, status, error in entries
        ]
        if uses_copy(connection):
            prefix = f"{copy_field(run_id)}\t{copy_field(batch_id)}\t{copy_field(target)}\t"
            suffix = f"\t{recorded_at.isoformat()}\n"
            text = "".join(prefix + "\t".join(map(copy_field, entry)) + suffix for entry in entries)
            copy_in(connection, "sync_audit", AUDIT_COLUMNS, text)
            return
        rows = [
            {
                "run_id": run_id,
                "batch_id": batch_id,
                "target": target,
                "record_key": key,
                "field": field,
                "old_value": old,
                "new_value": new,
                "status": status,
                "error": error,
                "recorded_at": recorded_at,
            }
            for key, field, old, new, status, error in entries
        ]
        for chunk in chunks(rows):
            connection.execute(sa.insert(audit_log), chunk)

    def audit_rows(self, target: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_log).order_by(audit_log.c.id)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        if run_id is not None:
            query = query.where(audit_log.c.run_id == run_id)
        with self.engine.connect() as connection:
            return [
                {
                    **row._mapping,
                    "old_value": decode_value(row.old_value),
                    "new_value": decode_value(row.new_value),
                }
                for row in connection.execute(query)
            ]

    @refused_as_one_line
    def record_conflicts(self, run_id: str, target: str, records: list[PlannedRecord]) -> None:
        """Audit the changes of a reviewed plan or undo left alone because the target's value moved since."""
        entries = [
            (r.key, c.field, encode_value(c.old), encode_value(c.new), CONFLICT, r.reason)
            for r in records
            for c in r.changes
        ]
        with self.engine.begin() as connection:
            self._append_audit(connection, (run_id, None, target, utc_now()), entries)  # type: ignore[arg-type]

    def applied_changes(self, run_id: str) -> tuple[str | None, list[tuple[str, str, Value, Value]]]:
        """The target of ``run_id`` and its applied changes ``(record_key, field, old, new)``, in audit order."""
        query = (
            sa.select(
                audit_log.c.target,
                audit_log.c.record_key,
                audit_log.c.field,
                audit_log.c.old_value,
                audit_log.c.new_value,
            )
            .where(audit_log.c.run_id == run_id, audit_log.c.status == APPLIED)
            .order_by(audit_log.c.id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        target = rows[0].target if rows else None
        return target, [
            (r.record_key, r.field, decode_value(r.old_value), decode_value(r.new_value)) for r in rows
        ]
