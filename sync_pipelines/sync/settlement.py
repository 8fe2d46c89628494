"""Settling what a killed run left in flight: each written-ahead change audited as applied or not, by what the
target holds now. Worked out without writing (``judge``), so a dry run can show it, and recorded by ``settle``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.database import is_postgresql
from sync_pipelines.core.redaction import describe_error
from sync_pipelines.sync.audit_store import AuditEntry, AuditLog
from sync_pipelines.sync.last_written_store import LastWritten
from sync_pipelines.sync.plan import Value, values_equal
from sync_pipelines.sync.state_schema import (
    APPLIED,
    INTERRUPTED,
    NOT_APPLIED,
    InFlightChange,
    WrittenRow,
    batches_in_flight,
    decode_changes,
    encode_changes,
    encode_value,
    logger,
    refused_as_one_line,
    utc_now,
    written_row,
)


@dataclass(frozen=True)
class SettledChange:
    """One change of an interrupted batch, and whether the target holds its new value."""

    key: str
    field: str
    old: Value
    new: Value
    status: str  # APPLIED or NOT_APPLIED


@dataclass(frozen=True)
class SettledBatch:
    batch_id: str
    run_id: str
    settled: tuple[SettledChange, ...]
    unread: list[InFlightChange]  # changes of records the run could not read: they stay in flight


@dataclass(frozen=True)
class Settlement:
    """How the batches interrupted runs left in flight would be settled; computed without writing, so a dry
    run can show it and a real run record it."""

    target: str
    batches: list[SettledBatch]

    @property
    def changes(self) -> list[SettledChange]:
        return [change for batch in self.batches for change in batch.settled]

    def counts(self) -> dict[str, int]:
        counts = {APPLIED: 0, NOT_APPLIED: 0}
        for change in self.changes:
            counts[change.status] += 1
        return counts

    @property
    def unread(self) -> int:
        return sum(len(batch.unread) for batch in self.batches)

    def __bool__(self) -> bool:
        return bool(self.batches)


class SettlementStore:
    """Settles the batches interrupted runs left in flight: their changes audited (``audit``) and, for a delta
    sync, those applied kept as last written (``last_written``), in one transaction."""

    def __init__(self, engine: Engine, audit: AuditLog, last_written: LastWritten) -> None:
        self.engine = engine
        self.audit = audit
        self.last_written = last_written

    @staticmethod
    def _batches_in_flight(
        connection: sa.Connection, target: str
    ) -> list[tuple[str, str, list[InFlightChange]]]:
        query = (
            sa.select(batches_in_flight.c.batch_id, batches_in_flight.c.run_id, batches_in_flight.c.changes)
            .where(batches_in_flight.c.target == target)
            .order_by(batches_in_flight.c.started_at)
        )
        return [
            (batch_id, run_id, decode_changes(changes))
            for batch_id, run_id, changes in connection.execute(query)
        ]

    def pending(self, target: str) -> dict[str, dict[str, Value]]:
        """Changes whose outcome a killed run never recorded: ``{record_key: {field: new value}}``."""
        result: dict[str, dict[str, Value]] = {}
        with self.engine.connect() as connection:
            for _, _, changes in self._batches_in_flight(connection, target):
                for key, field, _old, new in changes:
                    result.setdefault(key, {})[field] = new
        return result

    def judge(self, target: str, current: Mapping[str, Mapping[str, Value] | None]) -> Settlement:
        """What settling the batches killed runs left in flight would record, judged by what ``target`` holds
        now; reads only. ``current`` maps each record read from the target to its values (``None``: the
        target has no such record); a record not in ``current`` was not read, and its changes stay in flight
        for a run that can read it, rather than being guessed ``not_applied``."""
        batches: list[SettledBatch] = []
        with self.engine.connect() as connection:
            for batch_id, run_id, changes in self._batches_in_flight(connection, target):
                settled: list[SettledChange] = []
                unread: list[InFlightChange] = []
                for change in changes:
                    key, field, old, new = change
                    if key not in current:
                        unread.append(change)
                        continue
                    held = current[key]
                    applied = held is not None and values_equal(held.get(field), new)
                    settled.append(SettledChange(key, field, old, new, APPLIED if applied else NOT_APPLIED))
                batches.append(SettledBatch(batch_id, run_id, tuple(settled), unread))
        return Settlement(target, batches)

    @refused_as_one_line
    def settle(self, settlement: Settlement, remember_written: bool) -> dict[str, int]:
        """Record ``settlement`` in one transaction: an audit row per settled change, the batch rows gone (or
        cut down to their unread changes) and, with ``remember_written``, applied values as last written."""
        now = utc_now()
        target = settlement.target
        counts = {APPLIED: 0, NOT_APPLIED: 0}
        stuck = 0
        with self.engine.begin() as connection:
            written: list[WrittenRow] = []
            for batch in settlement.batches:
                entries: list[AuditEntry] = [
                    (c.key, c.field, encode_value(c.old), encode_value(c.new), c.status, INTERRUPTED)
                    for c in batch.settled
                ]
                row = batches_in_flight.c.batch_id == batch.batch_id
                # One batch's rows that cannot be written must not keep every other batch (and every later run)
                # from settling: it is left in flight, and the others go on. (PostgreSQL: a savepoint per batch;
                # SQLite, which neither limits lengths nor refuses NULs, has no such failure to survive.)
                savepoint = is_postgresql(connection)
                try:
                    with connection.begin_nested() if savepoint else contextlib.nullcontext():
                        self.audit.append(connection, (batch.run_id, batch.batch_id, target, now), entries)
                        if batch.unread:
                            connection.execute(
                                sa.update(batches_in_flight)
                                .where(row)
                                .values(changes=encode_changes(batch.unread))
                            )
                        else:
                            connection.execute(sa.delete(batches_in_flight).where(row))
                except (
                    SQLAlchemyError,
                    connection.dialect.loaded_dbapi.Error,
                ) as error:  # COPY: the driver's own
                    if not savepoint:
                        raise
                    stuck += 1
                    logger.warning(
                        f"{target}: the audit rows of interrupted batch {batch.batch_id} could not be written "
                        f"({describe_error(error)}); it stays in flight, the others are settled"
                    )
                    continue
                for change in batch.settled:
                    counts[change.status] += 1
                written += [
                    written_row(target, c.key, c.field, c.new, batch.run_id, now)
                    for c in batch.settled
                    if c.status == APPLIED
                ]
            if remember_written:
                self.last_written.upsert(connection, written)
        if stuck:
            counts["batches_left_in_flight"] = stuck
        return counts
