"""The project's own state: an audit row per applied change, and what was last written (for delta syncs).

Lives in ``SYNC_STATE_DATABASE_URL`` (SQLite under ``$DAGSTER_HOME`` by default, PostgreSQL in production).

Write-ahead: before a batch is sent to its target, its changes are committed as one ``sync_batches`` row (one
JSON document: a single row insert, however big the batch). Once the batch is applied, its outcome goes into
``sync_audit`` (one row per changed field: ``applied``, or ``failed`` with the reason) in the same transaction
that deletes the batch row. A process killed in between leaves the batch row behind; the next run settles it
against what the target really holds (``settlement``, then ``settle``), so no committed write is ever missing from the
log. The audit log itself is only ever appended to, which is what keeps it cheap beside a bulk write.

Record keys come from the systems synced (a Bakaláři id, an RT user id) and may be of any length: ``record_key``
is unbounded ``TEXT`` in ``sync_audit`` and ``sync_last_written``. A database created before that, with
``VARCHAR(255)`` columns (``metadata.create_all`` never alters an existing column), is upgraded when the store
opens it: on PostgreSQL ``ALTER COLUMN ... TYPE text``, a catalog-only change (no rewrite, no index rebuild);
SQLite never enforced the length. ``sync_last_written``'s key is part of its primary key, whose index entries
PostgreSQL caps at about 2.7 kB, so a key longer than ``LONG_KEY`` bytes (or holding a NUL, which
PostgreSQL's text cannot store) is kept there as ``<its first 64 characters>...#<sha256 of the key>``
(``stored_key``); the audit log keeps the whole key (NULs shown as U+FFFD). Settling never stops at a batch
whose audit rows cannot be written: that batch stays in flight, the others are settled, and the run goes on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.database import (
    create_database_engine,
    create_tables,
    default_state_url,
    pg_text_array,
    timeout_error,
)
from sync_pipelines.core.errors import StopsTheRun
from sync_pipelines.core.redaction import describe_error, redact
from sync_pipelines.sync.plan import (
    CONFLICT,
    Action,
    Conflict,
    FieldChange,
    PlannedRecord,
    Value,
    values_equal,
    written_changes,
)

STATE_SETTING = "SYNC_STATE_DATABASE_URL"

metadata = sa.MetaData()

audit_log = sa.Table(
    "sync_audit",
    metadata,
    # BIGINT on PostgreSQL: bulk syncs append a row per changed field; SQLite needs INTEGER for its row ids.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(36)),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("field", sa.String(255), nullable=False),
    sa.Column("old_value", sa.Text),
    sa.Column("new_value", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

# Batches written ahead and not settled yet: empty between runs unless a run was killed.
batches_in_flight = sa.Table(
    "sync_batches",
    metadata,
    sa.Column("batch_id", sa.String(36), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("changes", sa.Text, nullable=False),  # JSON: [[record_key, field, old, new], ...]
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
)
# A batch row lives for the length of one write: compressing its document would cost more than it saves.
sa.event.listen(
    batches_in_flight,
    "after_create",
    sa.DDL("ALTER TABLE sync_batches ALTER COLUMN changes SET STORAGE EXTERNAL").execute_if(
        dialect="postgresql"
    ),
)

last_written = sa.Table(
    "sync_last_written",
    metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("record_key", sa.Text, primary_key=True),
    sa.Column("field", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
)

# Plans dry runs saved for review (``apply_plan_id``) and undo previews: the one table a dry run writes to.
saved_plans = sa.Table(
    "sync_plans",
    metadata,
    sa.Column("plan_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("undo_of", sa.String(64)),  # the run an undo preview reverses
    sa.Column(
        "records", sa.Text, nullable=False
    ),  # JSON: [[key, action, desired, [[field, old, new], ...]], ...]
    sa.Column("counts", sa.Text, nullable=False),  # JSON: the plan's counts, for the plan table
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

APPLIED, FAILED, NOT_APPLIED = "applied", "failed", "not_applied"
INTERRUPTED = "settled after an interrupted run"
_AUDIT_COLUMNS = (
    "run_id",
    "batch_id",
    "target",
    "record_key",
    "field",
    "old_value",
    "new_value",
    "status",
    "error",
    "recorded_at",
)

_PG_UPSERT_WRITTEN = sa.text(
    "INSERT INTO sync_last_written (target, record_key, field, value, run_id, written_at) "
    "SELECT :target, t.record_key, t.field, t.value, :run_id, :now "
    "FROM unnest(CAST(:keys AS text[]), CAST(:fields AS text[]), CAST(:values AS text[])) AS t(record_key, field, value) "
    "ON CONFLICT (target, record_key, field) DO UPDATE "
    "SET value = EXCLUDED.value, run_id = EXCLUDED.run_id, written_at = EXCLUDED.written_at"
)

_CHUNK = 5000
# Keys longer than this (in UTF-8 bytes) are kept in ``sync_last_written`` by digest (see the module's doc).
LONG_KEY = 1024
_KEY_TABLES = ("sync_audit", "sync_last_written")
logger = logging.getLogger("sync_pipelines.sync.state")


class StateWriteRefused(StopsTheRun):
    """The state database refused a write (disk full, read-only, gone): with no audit and no write-ahead row,
    nothing more may be written to the target, so the run stops, in one line naming the setting."""

    setting = STATE_SETTING


F = TypeVar("F", bound=Callable[..., Any])


def _refused_as_one_line(method: F) -> F:
    """A state write's database error as ``StateWriteRefused``: its kind and first line only (the driver's full
    text repeats the statement, and a ``COPY`` error the row it stopped at: other people's records), a lock or
    statement timeout as the ``DatabaseTimeout`` naming its setting."""

    @functools.wraps(method)
    def write(self: SyncStateStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as error:
            timeout = timeout_error(error, "the sync state database")
            if timeout is not None:
                raise timeout from None
            raise StateWriteRefused(
                f"the sync state database refused a write: {describe_error(error)}; check {STATE_SETTING} "
                "(free disk space, a database that accepts writes)"
            ) from None

    return write  # type: ignore[return-value]


def stored_key(key: str) -> str:
    """``key`` as ``sync_last_written`` keeps it: itself, or for a very long key (or one holding a NUL) its first
    64 characters and its SHA-256, which fits any index and still tells a person which record it is."""
    if "\x00" not in key and len(key) <= LONG_KEY // 4:
        return key
    if len(key.encode("utf-8", "surrogatepass")) <= LONG_KEY and "\x00" not in key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_text(key[:64])}...#{digest}"


def _text(value: str) -> str:
    """Free text (a key, a reason) as PostgreSQL's text can hold it: NUL shown as U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


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
    unread: list[Any]  # changes of records the run could not read: they stay in flight


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


@dataclass(frozen=True)
class SavedPlan:
    plan_id: str
    target: str
    undo_of: str | None
    created_at: datetime
    records: list[PlannedRecord]


def _encode(value: Value) -> str | None:
    """A value as JSON text; strings (nearly every value) through the C encoder ``json.dumps`` itself uses."""
    if value is None:
        return None
    if type(value) is str:
        return encode_basestring(value)
    return json.dumps(value, ensure_ascii=False)


def _copy_field(value: str | None) -> str:
    """A value in PostgreSQL's COPY text format: ``\\N`` for NULL; backslash, tab and line breaks escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _written_row(
    target: str, key: str, field: str, value: Value, run_id: str, written_at: datetime
) -> dict[str, Any]:
    """One ``sync_last_written`` row, its value JSON-encoded."""
    return {
        "target": target,
        "record_key": stored_key(key),
        "field": field,
        "value": _encode(value),
        "run_id": run_id,
        "written_at": written_at,
    }


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
        create_tables(engine, metadata)
        self._widen_key_columns()

    def _widen_key_columns(self) -> None:
        """A state database made when keys were ``VARCHAR(255)``: make them ``TEXT`` (PostgreSQL; a catalog-only
        change, no table rewrite). SQLite never enforced the length."""
        if self.engine.dialect.name != "postgresql":
            return
        query = sa.text(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name IN ('sync_audit', 'sync_last_written') AND column_name = 'record_key' "
            "AND data_type <> 'text'"
        )
        with self.engine.begin() as connection:
            for (table,) in connection.execute(query).all():
                if table in _KEY_TABLES:
                    connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN record_key TYPE text")

    @classmethod
    def from_url(cls, url: str | None) -> SyncStateStore:
        return cls(create_database_engine(url or default_state_url(), STATE_SETTING))

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
                    result.setdefault(key, {})[field] = _decode(value)
                elif key in wanted:
                    result.setdefault(wanted[key], {})[field] = _decode(value)
        return result

    @_refused_as_one_line
    def remember(self, target: str, run_id: str, records: Mapping[str, Mapping[str, Value]]) -> None:
        """Record values read from the target that already match, so later delta runs need not read them again."""
        now = _now()
        rows = [
            _written_row(target, key, field, value, run_id, now)
            for key, values in records.items()
            for field, value in values.items()
        ]
        with self.engine.begin() as connection:
            self._upsert_written(connection, rows)

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
    @property
    def allows_concurrent_writes(self) -> bool:
        """Whether this store may be written from a worker thread while the caller writes to the target
        (PostgreSQL; an in-memory SQLite database is private to the thread that opened it)."""
        return self.engine.dialect.name == "postgresql"

    @_refused_as_one_line
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
                    started_at=_now(),
                )
            )
        return batch_id

    @_refused_as_one_line
    def discard_batch(self, batch_id: str) -> None:
        """Drop a write-ahead row whose batch was never sent (the run stopped before it)."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(batches_in_flight).where(batches_in_flight.c.batch_id == batch_id))

    @_refused_as_one_line
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
        now = _now()
        reasons = {key: redact(reason)[:2000] for key, reason in failures.items()} if failures else {}
        entries = []
        written: list[dict[str, Any]] = []
        for record in records:
            reason = failures.get(record.key)
            made = written_changes(record, reason)
            if reason is None:
                entries += [
                    (record.key, c.field, _encode(c.old), _encode(c.new), APPLIED, None)
                    for c in record.changes
                ]
            else:
                # Field by field: a record whose planned fields a conflict partly kept is partly applied.
                status = CONFLICT if isinstance(reason, Conflict) else FAILED
                entries += [
                    (record.key, c.field, _encode(c.old), _encode(c.new), APPLIED, None)
                    if c in made
                    else (record.key, c.field, _encode(c.old), _encode(c.new), status, reasons[record.key])
                    for c in record.changes
                ]
            if remember_written and (reason is None or made):
                # The whole desired record, not only the changed fields: the next run compares every field; of a
                # record partly kept by a conflict, not the fields kept (the target holds someone else's value).
                kept = (
                    set() if reason is None else {c.field for c in record.changes} - {c.field for c in made}
                )
                written += [
                    _written_row(target, record.key, field, value, run_id, now)
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
        entries: list[tuple[str, str, str | None, str | None, str, str | None]],
    ) -> None:
        """Append the audit rows of one batch (``run_id, batch_id, target, recorded_at``): one entry per change,
        ``(record_key, field, old_value, new_value, status, error)``. On PostgreSQL one ``COPY``, its text
        built here: an INSERT, or psycopg adapting each row, would cost more than the target's own write."""
        if not entries:
            return
        run_id, batch_id, target, recorded_at = batch
        entries = [
            (_text(key), _text(field), old, new, status, None if error is None else _text(error))
            for key, field, old, new, status, error in entries
        ]
        if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
            driver_connection = connection.connection.driver_connection
            assert driver_connection is not None
            prefix = f"{_copy_field(run_id)}\t{_copy_field(batch_id)}\t{_copy_field(target)}\t"
            suffix = f"\t{recorded_at.isoformat()}\n"
            text = "".join(prefix + "\t".join(map(_copy_field, entry)) + suffix for entry in entries)
            statement = f"COPY sync_audit ({', '.join(_AUDIT_COLUMNS)}) FROM STDIN"
            with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(text.encode())
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
        for chunk in _chunks(rows):
            connection.execute(sa.insert(audit_log), chunk)

    def _batches_in_flight(self, connection: sa.Connection, target: str) -> list[tuple[str, str, list[Any]]]:
        query = (
            sa.select(batches_in_flight.c.batch_id, batches_in_flight.c.run_id, batches_in_flight.c.changes)
            .where(batches_in_flight.c.target == target)
            .order_by(batches_in_flight.c.started_at)
        )
        return [
            (batch_id, run_id, json.loads(changes)) for batch_id, run_id, changes in connection.execute(query)
        ]

    def pending(self, target: str) -> dict[str, dict[str, Value]]:
        """Changes whose outcome a killed run never recorded: ``{record_key: {field: new value}}``."""
        result: dict[str, dict[str, Value]] = {}
        with self.engine.connect() as connection:
            for _, _, changes in self._batches_in_flight(connection, target):
                for key, field, _old, new in changes:
                    result.setdefault(key, {})[field] = new
        return result

    def settlement(self, target: str, current: Mapping[str, Mapping[str, Value] | None]) -> Settlement:
        """What settling the batches killed runs left in flight would record, judged by what ``target`` holds
        now; reads only. ``current`` maps each record read from the target to its values (``None``: the
        target has no such record); a record not in ``current`` was not read, and its changes stay in flight
        for a run that can read it, rather than being guessed ``not_applied``."""
        batches: list[SettledBatch] = []
        with self.engine.connect() as connection:
            for batch_id, run_id, changes in self._batches_in_flight(connection, target):
                settled: list[SettledChange] = []
                unread: list[list[Any]] = []
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

    @_refused_as_one_line
    def settle(self, settlement: Settlement, remember_written: bool) -> dict[str, int]:
        """Record ``settlement`` in one transaction: an audit row per settled change, the batch rows gone (or
        cut down to their unread changes) and, with ``remember_written``, applied values as last written."""
        now = _now()
        target = settlement.target
        counts = {APPLIED: 0, NOT_APPLIED: 0}
        stuck = 0
        with self.engine.begin() as connection:
            written: list[dict[str, Any]] = []
            for batch in settlement.batches:
                entries = [
                    (c.key, c.field, _encode(c.old), _encode(c.new), c.status, INTERRUPTED)
                    for c in batch.settled
                ]
                row = batches_in_flight.c.batch_id == batch.batch_id
                # One batch's rows that cannot be written must not keep every other batch (and every later run)
                # from settling: it is left in flight, and the others go on. (PostgreSQL: a savepoint per batch;
                # SQLite, which neither limits lengths nor refuses NULs, has no such failure to survive.)
                savepoint = connection.dialect.name == "postgresql"
                try:
                    with connection.begin_nested() if savepoint else contextlib.nullcontext():
                        self._append_audit(connection, (batch.run_id, batch.batch_id, target, now), entries)
                        if batch.unread:
                            connection.execute(
                                sa.update(batches_in_flight)
                                .where(row)
                                .values(changes=json.dumps(batch.unread, ensure_ascii=False))
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
                    _written_row(target, c.key, c.field, c.new, batch.run_id, now)
                    for c in batch.settled
                    if c.status == APPLIED
                ]
            if remember_written:
                self._upsert_written(connection, written)
        if stuck:
            counts["batches_left_in_flight"] = stuck
        return counts

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

    @_refused_as_one_line
    def record_conflicts(self, run_id: str, target: str, records: list[PlannedRecord]) -> None:
        """Audit the changes of a reviewed plan or undo left alone because the target's value moved since."""
        entries = [
            (r.key, c.field, _encode(c.old), _encode(c.new), CONFLICT, r.reason)
            for r in records
            for c in r.changes
        ]
        with self.engine.begin() as connection:
            self._append_audit(connection, (run_id, None, target, _now()), entries)  # type: ignore[arg-type]

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
        return target, [(r.record_key, r.field, _decode(r.old_value), _decode(r.new_value)) for r in rows]

    # -- saved plans --------------------------------------------------------------------------------------
    @_refused_as_one_line
    def save_plan(
        self,
        plan_id: str,
        target: str,
        records: list[PlannedRecord],
        counts: Mapping[str, int],
        undo_of: str | None = None,
    ) -> None:
        """Keep a dry run's plan (the records it would write) for ``apply_plan_id``; replaces a plan of that id."""
        document = [
            [r.key, r.action.value, dict(r.desired), [[c.field, c.old, c.new] for c in r.changes]]
            for r in records
        ]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(saved_plans).where(saved_plans.c.plan_id == plan_id))
            connection.execute(
                sa.insert(saved_plans).values(
                    plan_id=plan_id,
                    target=target,
                    undo_of=undo_of,
                    records=json.dumps(document, ensure_ascii=False, default=str),
                    counts=json.dumps(dict(counts)),
                    created_at=_now(),
                )
            )

    def load_plan(self, plan_id: str) -> SavedPlan | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(saved_plans).where(saved_plans.c.plan_id == plan_id)).first()
        if row is None:
            return None
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
        records = [
            PlannedRecord(key, Action(action), desired, tuple(FieldChange(*change) for change in changes))
            for key, action, desired, changes in json.loads(row.records)
        ]
        return SavedPlan(row.plan_id, row.target, row.undo_of, created, records)

    # -- retention ----------------------------------------------------------------------------------------
    def prune(self, cutoffs: Mapping[str, datetime], dry_run: bool = False) -> dict[str, int]:
        """Delete (or, with ``dry_run``, count) what is older than its cutoff, in one transaction: ``audit``
        rows by ``recorded_at``, saved ``plans`` by ``created_at``, ``write_ahead`` rows (batches a killed run
        left in flight whose records no run read again) by ``started_at``. Old values of the targets' fields
        live in these rows, so they go when the organisation's retention says so; returns the counts."""
        tables = {
            "audit": (audit_log, audit_log.c.recorded_at),
            "plans": (saved_plans, saved_plans.c.created_at),
            "write_ahead": (batches_in_flight, batches_in_flight.c.started_at),
        }
        counts: dict[str, int] = {}
        with self.engine.begin() as connection:
            for name, cutoff in cutoffs.items():
                table, moment = tables[name]
                old = moment < cutoff
                if dry_run:
                    query = sa.select(sa.func.count()).select_from(table).where(old)
                    counts[name] = int(connection.execute(query).scalar() or 0)
                else:
                    counts[name] = connection.execute(sa.delete(table).where(old)).rowcount
        return counts
