"""The batch writer ``apply_plan`` calls: each batch's rows and their ``"ExternalRef"`` rows in one transaction.

Inserts bring their own id and set ``"createdAt"`` and ``"updatedAt"`` to the same UTC instant (Prisma's client
does; the column default would be later than ``"updatedAt"``, and in the server's ``timezone``); updates set only
the fields that changed, plus ``"updatedAt"``. Statements are set-based per table (``executemany``, which psycopg pipelines; ``ON CONFLICT``
upserts for the refs), in foreign-key order. Any database
error rolls the whole batch back and fails its records (``apply_plan`` records that); a record whose row points
at a row that failed to be created is failed up front instead of breaking its batch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import upsert_into
from sync_pipelines.defs.bakalari.desired import KIND_ORDER, REF, kind_of
from sync_pipelines.defs.bakalari.edurpg import (
    ENTITY_TABLES,
    REF_TYPES,
    external_ref,
    new_id,
    utc_now,
)
from sync_pipelines.sync.plan import Action, Conflict, PlannedRecord, Value
from sync_pipelines.sync.source import moved_fields


def external_id_of(record: PlannedRecord) -> str:
    """The ``"ExternalRef"."externalId"``: the Bakaláři id, or ``<userId>-<subjectInternalId>`` (EduRPG's rule)."""
    if kind_of(record.key) == "Enrollment":
        return f"{record.desired['userId']}-{record.desired['subjectId']}"
    return record.key.split(":", 1)[1]


def row_id_of(record: PlannedRecord) -> str:
    """The EduRPG row id a planned record carries (``desired["id"]``, a string; empty when it carries none)."""
    row_id = record.desired.get("id")
    return row_id if isinstance(row_id, str) else ""


def ref_of(record: PlannedRecord) -> Mapping[str, Value]:
    """The ``"ExternalRef"`` a planned record carries (``desired[REF]``: its ``internalId`` and ``metadata``)."""
    ref = record.desired[REF]
    if not isinstance(ref, Mapping):
        raise TypeError(f"record {record.key}: its {REF!r} field holds no ExternalRef")
    return ref


class EntityWriter:
    """Writes batches of ``Class``/``Subject``/``User``/``Enrollment`` records; counts the rows it wrote."""

    def __init__(
        self, engine: Engine, depends_on: Mapping[str, list[str]], conditional: bool = False
    ) -> None:
        self.engine = engine
        self.depends_on = depends_on
        # Reviewed plans and undo: a record is written only if its row still holds each change's old value.
        self.conditional = conditional
        self.failed_creates: set[str] = set()
        self.rows_written: Counter[str] = Counter()

    def __call__(self, batch: list[PlannedRecord]) -> dict[str, str]:
        failures: dict[str, str] = {}
        todo: list[PlannedRecord] = []
        for record in batch:
            blocked = next(
                (key for key in self.depends_on.get(record.key, []) if key in self.failed_creates), None
            )
            if blocked is not None:
                failures[record.key] = f"not written: {blocked} could not be created"
                if record.action is Action.CREATE:
                    self.failed_creates.add(record.key)
                continue
            todo.append(record)
        try:
            with self.engine.begin() as connection:
                if self.conditional:
                    moved = self._moved(connection, todo)
                    failures.update(moved)
                    todo = [
                        record
                        if record.key not in moved
                        else record.leaving(moved[record.key].left_alone(record))
                        for record in todo
                    ]
                    todo = [record for record in todo if record.changes]
                written = self._write(connection, todo)
        except Exception:
            self.failed_creates.update(record.key for record in todo if record.action is Action.CREATE)
            raise
        self.rows_written.update(written)
        return failures

    def _moved(self, connection: sa.Connection, records: list[PlannedRecord]) -> dict[str, Conflict]:
        """``Conflict``s naming the fields whose rows (locked for the transaction) no longer hold the old values;
        a record's other fields are still written."""
        rows: dict[str, dict[str, Any]] = {}
        refs: dict[tuple[str, str], dict[str, Any]] = {}
        for kind in KIND_ORDER:
            mine = [record for record in records if kind_of(record.key) == kind]
            if not mine:
                continue
            table = ENTITY_TABLES[kind]
            ids = [record.desired.get("id") for record in mine]
            query = sa.select(table).where(table.c.id.in_(ids)).with_for_update()
            rows.update({row.id: dict(row._mapping) for row in connection.execute(query)})
            externals = [external_id_of(record) for record in mine]
            query = sa.select(external_ref).where(
                external_ref.c.type == REF_TYPES[kind], external_ref.c.externalId.in_(externals)
            )
            refs.update({(row.type, row.externalId): dict(row._mapping) for row in connection.execute(query)})
        moved: dict[str, Conflict] = {}
        for record in records:
            kind = kind_of(record.key)
            row = rows.get(row_id_of(record))
            ref = refs.get((REF_TYPES[kind], external_id_of(record)))
            if record.action is Action.CREATE:
                if row is not None or ref is not None:
                    moved[record.key] = Conflict("the record was created by someone else")
                continue
            if row is None:
                moved[record.key] = Conflict("the row is gone")
                continue
            held = {
                **row,
                REF: {"internalId": ref["internalId"], "metadata": ref["metadata"]} if ref else None,
            }
            fields = moved_fields(record.changes, held)
            if fields:
                moved[record.key] = Conflict(", ".join(fields), fields)
        return moved

    def _write(self, connection: sa.Connection, records: list[PlannedRecord]) -> Counter[str]:
        now = utc_now()
        inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        updates: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
        refs: list[dict[str, Any]] = []
        for record in records:
            kind = kind_of(record.key)
            values = {name: value for name, value in record.desired.items() if name != REF}
            changed = {change.field for change in record.changes}
            if record.action is Action.CREATE:
                inserts[kind].append({**values, "createdAt": now, "updatedAt": now})
            else:
                columns = tuple(sorted(changed - {REF, "id"}))
                if columns:
                    updates[kind, columns].append(
                        {"row_id": values["id"], **{f"v_{name}": values[name] for name in columns}}
                    )
            if record.action is Action.CREATE or REF in changed:
                ref = ref_of(record)
                refs.append(
                    {
                        "id": new_id(),
                        "type": REF_TYPES[kind],
                        "externalId": external_id_of(record),
                        "internalId": ref["internalId"],
                        "metadata": ref["metadata"],
                        "createdAt": now,
                        "updatedAt": now,
                    }
                )
        written: Counter[str] = Counter()
        for kind in KIND_ORDER:
            table = ENTITY_TABLES[kind]
            rows = inserts.get(kind)
            if rows:
                table_columns = [c.name for c in table.columns]
                connection.execute(
                    sa.insert(table), [{name: row.get(name) for name in table_columns} for row in rows]
                )
                written[kind] += len(rows)
            for (update_kind, columns), params in updates.items():
                if update_kind != kind:
                    continue
                statement = (
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("row_id"))
                    .values({**{name: sa.bindparam(f"v_{name}") for name in columns}, "updatedAt": now})
                )
                connection.execute(statement, params)
                written[kind] += len(params)
        if refs:
            upsert = upsert_into(connection, external_ref)
            upsert = upsert.on_conflict_do_update(
                index_elements=[external_ref.c.type, external_ref.c.externalId],
                set_={
                    "internalId": upsert.excluded.internalId,
                    "metadata": upsert.excluded.metadata,
                    "updatedAt": upsert.excluded.updatedAt,
                },
            )
            connection.execute(upsert, refs)
        written["ExternalRef"] += len(refs)
        return written
