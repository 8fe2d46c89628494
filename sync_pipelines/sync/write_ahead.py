"""Write-ahead: a batch's changes committed before it is sent, its outcome audited when it returns, in the
transaction that removes its write-ahead row. See ``sync.state`` for the whole scheme."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import is_postgresql
from sync_pipelines.core.redaction import redact
from sync_pipelines.sync.audit_store import AuditEntry, AuditLog
from sync_pipelines.sync.last_written_store import LastWritten
from sync_pipelines.sync.plan import CONFLICT, Conflict, PlannedRecord, written_changes
from sync_pipelines.sync.state_schema import (
    APPLIED,
    FAILED,
    WrittenRow,
    batches_in_flight,
    encode_changes,
    encode_value,
    refused_as_one_line,
    utc_now,
    written_row,
)


class WriteAhead:
    """The write-ahead rows of every target (``sync_batches``): one per batch sent and not yet audited. A batch's
    outcome goes into the audit log (``audit``) and, for a delta sync, the last written values (``last_written``)
    in one transaction with the removal of its row."""

    def __init__(self, engine: Engine, audit: AuditLog, last_written: LastWritten) -> None:
        self.engine = engine
        self.audit = audit
        self.last_written = last_written

    @property
    def allows_concurrent_writes(self) -> bool:
        """Whether this store may be written from a worker thread while the caller writes to the target
        (PostgreSQL; an in-memory SQLite database is private to the thread that opened it)."""
        return is_postgresql(self.engine)

    @refused_as_one_line
    def begin(self, run_id: str, target: str, records: list[PlannedRecord]) -> str:
        """Commit the batch's changes as one write-ahead row before anything is sent to the target; its id."""
        with self.engine.begin() as connection:
            return self._write_ahead(connection, run_id, target, records)

    @staticmethod
    def _write_ahead(
        connection: sa.Connection, run_id: str, target: str, records: list[PlannedRecord]
    ) -> str:
        batch_id = uuid.uuid4().hex
        changes = [
            (record.key, change.field, change.old, change.new)
            for record in records
            for change in record.changes
        ]
        if changes:
            connection.execute(
                sa.insert(batches_in_flight).values(
                    batch_id=batch_id,
                    run_id=run_id,
                    target=target,
                    changes=encode_changes(changes),
                    started_at=utc_now(),
                )
            )
        return batch_id

    @refused_as_one_line
    def discard(self, batch_id: str) -> None:
        """Drop a write-ahead row whose batch was never sent (the run stopped before it)."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(batches_in_flight).where(batches_in_flight.c.batch_id == batch_id))

    @refused_as_one_line
    def finish(
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
        written: list[WrittenRow] = []
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
            self.audit.append(connection, (run_id, batch_id, target, now), entries)
            connection.execute(sa.delete(batches_in_flight).where(batches_in_flight.c.batch_id == batch_id))
            if remember_written:
                self.last_written.upsert(connection, written)
            if next_records is not None:
                return self._write_ahead(connection, run_id, target, next_records)
        return None
