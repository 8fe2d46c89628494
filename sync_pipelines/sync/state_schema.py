"""The sync state database's tables, the statuses its audit rows carry, and how values and keys are stored.

Shared by the parts of the state store (``sync.state``): write-ahead and audit, settlement, saved plans."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from json.encoder import encode_basestring
from typing import Concatenate, ParamSpec, Protocol, TypedDict, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.database import is_postgresql, timeout_error
from sync_pipelines.core.errors import StopsTheRun
from sync_pipelines.core.redaction import describe_error
from sync_pipelines.sync.plan import (
    Value,
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


def _store_batches_uncompressed(table: sa.Table, connection: sa.Connection, **_: object) -> None:
    """A batch row lives for the length of one write: compressing its document would cost more than it saves."""
    if is_postgresql(connection):
        connection.exec_driver_sql(f"ALTER TABLE {table.name} ALTER COLUMN changes SET STORAGE EXTERNAL")


sa.event.listen(batches_in_flight, "after_create", _store_batches_uncompressed)

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

# Record history (``sync.record_history``): what each run was, and what it did to each record besides writing it.
# The audit log holds every write; a run's kind and its other per-record outcomes are kept here, by record id.
runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("plan_id", sa.String(64)),  # the saved plan the run applied
    sa.Column("undo_of", sa.String(64)),  # the run it reversed
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

record_outcomes = sa.Table(
    "sync_record_outcomes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # PLANNED, SKIPPED or ROW_ERROR
    sa.Column("category", sa.Text),  # a skip's category (``no_rt_user``, ``not_found``, ...)
    sa.Column("field", sa.String(255)),  # a planned change's field, old and new value
    sa.Column("old_value", sa.Text),
    sa.Column("new_value", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
PLANNED, SKIPPED, ROW_ERROR = "planned", "skipped", "row_error"
OUTCOME_COLUMNS = (
    "run_id",
    "target",
    "record_key",
    "outcome",
    "category",
    "field",
    "old_value",
    "new_value",
    "reason",
    "recorded_at",
)

# One record's rows, found by its key: a hash index on PostgreSQL (it keeps a 4-byte hash per row, so keys of any
# length fit, where a B-tree entry is capped at about 2.7 kB), a B-tree on SQLite (no such cap). A record's audit
# rows and outcomes are then read in milliseconds however many runs the tables hold.
HISTORY_INDEXES = (
    sa.Index("ix_sync_audit_record_key", audit_log.c.record_key, postgresql_using="hash"),
    sa.Index("ix_sync_record_outcomes_record_key", record_outcomes.c.record_key, postgresql_using="hash"),
)

APPLIED, FAILED, NOT_APPLIED = "applied", "failed", "not_applied"
INTERRUPTED = "settled after an interrupted run"
AUDIT_COLUMNS = (
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

PG_UPSERT_WRITTEN = sa.text(
    "INSERT INTO sync_last_written (target, record_key, field, value, run_id, written_at) "
    "SELECT :target, t.record_key, t.field, t.value, :run_id, :now "
    "FROM unnest(CAST(:keys AS text[]), CAST(:fields AS text[]), CAST(:values AS text[])) AS t(record_key, field, value) "
    "ON CONFLICT (target, record_key, field) DO UPDATE "
    "SET value = EXCLUDED.value, run_id = EXCLUDED.run_id, written_at = EXCLUDED.written_at"
)

CHUNK_ROWS = 5000
# Keys longer than this (in UTF-8 bytes) are kept in ``sync_last_written`` by digest (see the module's doc).
LONG_KEY = 1024
KEY_TABLES = ("sync_audit", "sync_last_written")
logger = logging.getLogger("sync_pipelines.sync.state")


class StateWriteRefused(StopsTheRun):
    """The state database refused a write (disk full, read-only, gone): with no audit and no write-ahead row,
    nothing more may be written to the target, so the run stops, in one line naming the setting."""

    setting = STATE_SETTING


class OnStateDatabase(Protocol):
    """A part of the state store: it reads and writes through ``engine``."""

    @property
    def engine(self) -> Engine: ...


Part = TypeVar("Part", bound=OnStateDatabase)
P = ParamSpec("P")
R = TypeVar("R")


def refused_as_one_line(method: Callable[Concatenate[Part, P], R]) -> Callable[Concatenate[Part, P], R]:
    """A state write's database error as ``StateWriteRefused``: its kind and first line only (the driver's full
    text repeats the statement, and a ``COPY`` error the row it stopped at: other people's records), a lock or
    statement timeout as the ``DatabaseTimeout`` naming its setting."""

    @functools.wraps(method)
    def write(part: Part, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(part, *args, **kwargs)
        except (SQLAlchemyError, part.engine.dialect.loaded_dbapi.Error) as error:
            timeout = timeout_error(error, "the sync state database")
            if timeout is not None:
                raise timeout from None
            raise StateWriteRefused(
                f"the sync state database refused a write: {describe_error(error)}; check {STATE_SETTING} "
                "(free disk space, a database that accepts writes)"
            ) from None

    return write


def stored_key(key: str) -> str:
    """``key`` as ``sync_last_written`` keeps it: itself, or for a very long key (or one holding a NUL) its first
    64 characters and its SHA-256, which fits any index and still tells a person which record it is."""
    if "\x00" not in key and len(key) <= LONG_KEY // 4:
        return key
    if len(key.encode("utf-8", "surrogatepass")) <= LONG_KEY and "\x00" not in key:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{storable_text(key[:64])}...#{digest}"


def storable_text(value: str) -> str:
    """Free text (a key, a reason) as PostgreSQL's text can hold it: NUL shown as U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def encode_value(value: Value) -> str | None:
    """A value as JSON text; strings (nearly every value) through the C encoder ``json.dumps`` itself uses."""
    if value is None:
        return None
    if type(value) is str:
        return encode_basestring(value)
    return json.dumps(value, ensure_ascii=False)


def copy_field(value: str | None) -> str:
    """A value in PostgreSQL's COPY text format: ``\\N`` for NULL; backslash, tab and line breaks escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def uses_copy(connection: sa.Connection) -> bool:
    """Whether rows are appended with PostgreSQL's ``COPY`` (psycopg 3) rather than an ``INSERT``."""
    return is_postgresql(connection) and connection.dialect.driver == "psycopg"


def copy_in(connection: sa.Connection, table: str, columns: Iterable[str], text: str) -> None:
    """``COPY table (columns) FROM STDIN`` of ``text``, rows already in COPY's text format (``copy_field``): an
    INSERT, or psycopg adapting each row, would cost more than the target's own write of a bulk batch."""
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(text.encode())


class WrittenRow(TypedDict):
    """One ``sync_last_written`` row."""

    target: str
    record_key: str
    field: str
    value: str | None  # JSON
    run_id: str
    written_at: datetime


def written_row(
    target: str, key: str, field: str, value: Value, run_id: str, written_at: datetime
) -> WrittenRow:
    """One ``sync_last_written`` row, its key as stored (``stored_key``) and its value JSON-encoded."""
    return {
        "target": target,
        "record_key": stored_key(key),
        "field": field,
        "value": encode_value(value),
        "run_id": run_id,
        "written_at": written_at,
    }


# A change written ahead, as a ``sync_batches`` row keeps it (a JSON list of them): record key, field, old, new.
InFlightChange = tuple[str, str, Value, Value]


def encode_changes(changes: Iterable[InFlightChange]) -> str:
    return json.dumps(list(changes), ensure_ascii=False)


def decode_changes(text: str) -> list[InFlightChange]:
    return [(key, field, old, new) for key, field, old, new in json.loads(text)]


def decode_value(text: str | None) -> Value:
    return None if text is None else json.loads(text)


Row = TypeVar("Row", bound=Mapping[str, object])


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def chunks(rows: Sequence[Row]) -> Iterable[Sequence[Row]]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS]
