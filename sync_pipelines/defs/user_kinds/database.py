"""ZLV's ``users`` table as the user-kind sync reads and writes it.

Reads are one query each. Writes are set-based: on PostgreSQL one ``UPDATE ... FROM unnest(ids, kinds)`` per
batch, in the batch's own transaction, which is what makes 100,000 changed users a matter of seconds (the seed
sent its batches as ``VALUES`` lists from four threads and reached about 400 rows/s end to end). SQLite, used by
the demo, gets an ``executemany`` in one transaction.

A kind write also sets ``updated_at = now()`` in the same statement, as ZLV's own app does on every write to a
user (no trigger does it there), so ZLV's "recently changed" views show the sync's changes; ``stamp_updated_at``
(``ZLV_SET_UPDATED_AT``) turns it off. A row whose kind is already right is never written, so it keeps its
``updated_at``.

Every statement is bounded by ``SYNC_LOCK_TIMEOUT_SECONDS`` / ``SYNC_STATEMENT_TIMEOUT_SECONDS`` (see
``sync_pipelines.core.database``): a ``LOCK TABLE users`` held by another session ends the run with an error
naming the table and the setting, instead of a wait without limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import (
    create_database_engine,
    is_postgresql,
    pg_text_array,
    require_table,
    timeouts_named,
)
from sync_pipelines.defs.user_kinds.mapping import KINDS
from sync_pipelines.sync.plan import Conflict

SETTING = "ZLV_DATABASE_URL"
ID_CHUNK = 10_000


@dataclass(frozen=True)
class ZlvUser:
    id: str
    email: str
    kind: str | None


class ZlvUsers:
    """The ``users`` table (id, email, deleted_at, kind; updated_at written) of one ZLV database."""

    def __init__(self, engine: Engine, table_name: str = "users", stamp_updated_at: bool = True) -> None:
        self.engine = engine
        self.table_name = table_name
        self.stamp_updated_at = stamp_updated_at

    @classmethod
    def from_url(cls, url: str, table_name: str = "users", stamp_updated_at: bool = True) -> ZlvUsers:
        return cls(create_database_engine(url, SETTING), table_name, stamp_updated_at)

    @property
    def _stamps(self) -> bool:
        """Whether a kind write sets ``updated_at = now()`` too (on, and the table has the column)."""
        return self.stamp_updated_at and "updated_at" in self.table.c

    def _stamp(self) -> dict[str, sa.ColumnElement]:
        """The ``updated_at = now()`` assignment a kind write carries, when it carries one."""
        return {"updated_at": sa.func.now()} if self._stamps else {}

    @property
    def _what(self) -> str:
        return f"ZLV's table {self.table_name!r} ({SETTING})"

    @cached_property
    def table(self) -> sa.Table:
        with timeouts_named(self._what):
            return require_table(self.engine, self.table_name, SETTING, ["id", "email", "kind", "deleted_at"])

    def _in_scope(self, include_deleted: bool) -> sa.ColumnElement[bool]:
        users = self.table
        condition = users.c.email.is_not(None)
        return condition if include_deleted else condition & users.c.deleted_at.is_(None)

    def read_users(self, include_deleted: bool = False) -> list[ZlvUser]:
        """Users with an email (and, unless ``include_deleted``, not deleted), ordered by id, with their kind:
        the records to look up and the current state of the target, in one query."""
        users = self.table
        query = (
            sa.select(users.c.id, users.c.email, users.c.kind)
            .where(self._in_scope(include_deleted))
            .order_by(users.c.id)
        )
        with timeouts_named(self._what), self.engine.connect() as connection:
            return [ZlvUser(str(row.id), row.email, row.kind) for row in connection.execute(query)]

    def read_kinds(self, ids: Iterable[str]) -> dict[str, str | None]:
        """``{id: kind}`` for those of ``ids`` that exist (to settle audit rows of an interrupted run)."""
        users = self.table
        wanted = list(ids)
        kinds: dict[str, str | None] = {}
        with timeouts_named(self._what), self.engine.connect() as connection:
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[start : start + ID_CHUNK]
                query = sa.select(users.c.id, users.c.kind).where(sa.cast(users.c.id, sa.String).in_(chunk))
                kinds.update({str(row.id): row.kind for row in connection.execute(query)})
        return kinds

    # -- writes ----------------------------------------------------------------------------------------------
    @cached_property
    def _postgresql_update(self) -> sa.TextClause:
        id_type = self.table.c.id.type.compile(dialect=self.engine.dialect)
        table = self.engine.dialect.identifier_preparer.quote(self.table_name)
        stamp = ", updated_at = now()" if self._stamps else ""
        return sa.text(
            f"UPDATE {table} AS u SET kind = s.kind{stamp} "
            f"FROM unnest(CAST(CAST(:ids AS text) AS {id_type}[]), CAST(:kinds AS text[])) AS s(id, kind) "
            "WHERE u.id = s.id"
        )

    def write_kinds(self, changes: Sequence[tuple[str, str | None]]) -> dict[str, str]:
        """Set ``kind`` for ``(id, kind)`` pairs in one transaction; returns ``{id: reason}`` for the ids that
        matched no row (a user deleted from the table since it was read)."""
        if not changes:
            return {}
        ids = [user_id for user_id, _ in changes]
        with timeouts_named(self._what), self.engine.begin() as connection:
            if is_postgresql(self.engine):
                # A batch is a thousand primary-key lookups; on a small or freshly loaded table the planner may
                # prefer hashing the whole table for every batch (40-60 ms instead of 6 ms per 1,000 rows on
                # 100,000 users). SET LOCAL keeps the index plan to this transaction.
                connection.exec_driver_sql(
                    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
                )
                result = connection.execute(
                    self._postgresql_update,
                    {"ids": pg_text_array(ids), "kinds": pg_text_array(kind for _, kind in changes)},
                )
            else:
                users = self.table
                statement = (
                    sa.update(users)
                    .where(users.c.id == sa.bindparam("user_id"))
                    .values(kind=sa.bindparam("new_kind"), **self._stamp())
                )
                result = connection.execute(
                    statement, [{"user_id": user_id, "new_kind": kind} for user_id, kind in changes]
                )
        if result.rowcount == len(changes):
            return {}
        written = set(self.read_kinds(ids))
        return {user_id: "no such user in ZLV any more" for user_id in ids if user_id not in written}

    def write_kinds_if(self, changes: Sequence[tuple[str, str | None, str | None]]) -> dict[str, str]:
        """Set ``kind`` for ``(id, expected old kind, new kind)`` only where the row still holds the old kind
        (``UPDATE ... WHERE id = :id AND kind IS NOT DISTINCT FROM :old``), all in one transaction; a row whose
        kind moved is answered with a ``Conflict``, a missing row with a failure. For reviewed plans and undo."""
        users = self.table
        statement = (
            sa.update(users)
            .where(users.c.id == sa.bindparam("user_id"))
            .where(users.c.kind.is_not_distinct_from(sa.bindparam("old_kind", type_=users.c.kind.type)))
            .values(kind=sa.bindparam("new_kind", type_=users.c.kind.type), **self._stamp())
        )
        missed = []
        with timeouts_named(self._what), self.engine.begin() as connection:
            for user_id, old, new in changes:
                result = connection.execute(statement, {"user_id": user_id, "old_kind": old, "new_kind": new})
                if result.rowcount != 1:
                    missed.append(user_id)
        if not missed:
            return {}
        held = self.read_kinds(missed)
        return {
            user_id: Conflict(f"kind is {held[user_id]!r} now")
            if user_id in held
            else "no such user in ZLV any more"
            for user_id in missed
        }

    # -- checks ----------------------------------------------------------------------------------------------
    def invalid_kinds(self) -> dict[str, int]:
        """``{kind: users}`` for every value of ``kind`` that is neither NULL nor one of the four kinds."""
        users = self.table
        query = (
            sa.select(users.c.kind, sa.func.count())
            .where(users.c.kind.is_not(None) & users.c.kind.not_in(KINDS))
            .group_by(users.c.kind)
        )
        with self.engine.connect() as connection:
            return {str(kind): int(count) for kind, count in connection.execute(query)}

    def coverage(self) -> tuple[int, int]:
        """``(users with an email and not deleted, those of them whose kind is NULL)``."""
        users = self.table
        scope = self._in_scope(include_deleted=False) & (sa.func.trim(users.c.email) != "")
        query = sa.select(sa.func.count(), sa.func.count().filter(users.c.kind.is_(None))).where(scope)
        with self.engine.connect() as connection:
            total, without = connection.execute(query).one()
        return int(total), int(without)
