"""The audit log: one row per change a run applied, failed, left alone as a conflict or settled, only ever appended
to. The write-ahead (``sync.write_ahead``) and the settlement (``sync.settlement``) append to it in their own
transactions; see ``sync.state`` for the whole scheme."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.sync.plan import CONFLICT, PlannedRecord, Value
from sync_pipelines.sync.state_schema import (
    APPLIED,
    AUDIT_COLUMNS,
    audit_log,
    chunks,
    copy_field,
    copy_in,
    decode_value,
    encode_value,
    refused_as_one_line,
    storable_text,
    uses_copy,
    utc_now,
)

# One audit row before its run, batch, target and time: (record key, field, old, new, status, reason).
AuditEntry = tuple[str, str, str | None, str | None, str, str | None]
# The run, the batch (none for a change audited outside a batch: a conflict found at planning), the target and
# the time every row of one append shares.
AuditBatch = tuple[str, str | None, str, datetime]
# One audit row as read back: its columns, the values decoded.
AuditRow = dict[str, Value | datetime]


class AuditLog:
    """The audit log of every target: appended to in a caller's transaction, read by run and by target."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def append(connection: sa.Connection, batch: AuditBatch, entries: list[AuditEntry]) -> None:
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

    def rows(self, target: str | None = None, run_id: str | None = None) -> list[AuditRow]:
        """The audit rows of ``target`` and ``run_id`` (either or both), in the order they were appended."""
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
        entries: list[AuditEntry] = [
            (r.key, c.field, encode_value(c.old), encode_value(c.new), CONFLICT, r.reason)
            for r in records
            for c in r.changes
        ]
        with self.engine.begin() as connection:
            self.append(connection, (run_id, None, target, utc_now()), entries)

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
