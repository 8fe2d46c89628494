"""The values this project last wrote to (or found in) each target, field by field: what a delta sync compares
with instead of reading every record again (``SyncSource.remembers_written``), and what record history names as
a record's last write. Keys are kept as ``stored_key`` makes them (see ``sync.state``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import is_postgresql, pg_text_array, upsert_into
from sync_pipelines.sync.plan import Value
from sync_pipelines.sync.state_schema import (
    PG_UPSERT_WRITTEN,
    WrittenRow,
    chunks,
    decode_value,
    encode_value,
    last_written,
    refused_as_one_line,
    stored_key,
    utc_now,
    written_row,
)

# Rows of one set-based upsert on PostgreSQL.
UPSERT_CHUNK = 50_000


class LastWritten:
    """``sync_last_written``: read by a run before it plans, upserted in the transaction that audits a write."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read(self, target: str, keys: Iterable[str] | None = None) -> dict[str, dict[str, Value]]:
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
            self.upsert(connection, rows)

    @staticmethod
    def upsert(connection: sa.Connection, rows: Sequence[WrittenRow]) -> None:
        """Insert or replace ``rows`` in the caller's transaction (the one that audits their write)."""
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
            for start in range(0, len(items), UPSERT_CHUNK):
                chunk = items[start : start + UPSERT_CHUNK]
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
            upsert = upsert_into(connection, last_written)
            upsert = upsert.on_conflict_do_update(
                index_elements=[last_written.c.target, last_written.c.record_key, last_written.c.field],
                set_={
                    "value": upsert.excluded.value,
                    "run_id": upsert.excluded.run_id,
                    "written_at": upsert.excluded.written_at,
                },
            )
            connection.execute(upsert, rows_chunk)

    # -- what record history reads ------------------------------------------------------------------------------
    def runs(self, target: str, keys: Iterable[str]) -> dict[tuple[str, str], tuple[Value, str]]:
        """``{(key, field): (value, run id)}`` as the project last wrote (or found) them in ``target``."""
        stored = {stored_key(key): key for key in keys}
        query = sa.select(
            last_written.c.record_key, last_written.c.field, last_written.c.value, last_written.c.run_id
        ).where(last_written.c.target == target, last_written.c.record_key.in_(sorted(stored)))
        with self.engine.connect() as connection:
            return {
                (stored[row.record_key], row.field): (decode_value(row.value), row.run_id)
                for row in connection.execute(query)
            }

    def keys_with(self, target: str, field: str, value: Value) -> list[str]:
        """The keys whose last-written ``field`` holds ``value`` (RT: the users last given a student id). One pass
        over the target's last-written rows: a few hundred thousand rows at most, read once per question."""
        query = sa.select(last_written.c.record_key).where(
            last_written.c.target == target,
            last_written.c.field == field,
            last_written.c.value == encode_value(value),
        )
        with self.engine.connect() as connection:
            return sorted(row.record_key for row in connection.execute(query))
