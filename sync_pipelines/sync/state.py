"""The project's own state: an audit row per applied change, and what was last written (for delta syncs).

Lives in ``SYNC_STATE_DATABASE_URL`` (SQLite under ``$DAGSTER_HOME`` by default, PostgreSQL in production).

Write-ahead: before a batch is sent to its target, its changes are committed as one ``sync_batches`` row (one
JSON document: a single row insert, however big the batch). Once the batch is applied, its outcome goes into
``sync_audit`` (one row per changed field: ``applied``, or ``failed`` with the reason) in the same transaction
that deletes the batch row. A process killed in between leaves the batch row behind; the next run settles it
against what the target really holds (``settlement.judge``, then ``settlement.settle``), so no committed write is
ever missing from the log. The audit log itself is only ever appended to, which is what keeps it cheap beside a bulk write.

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

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import (
    create_database_engine,
    create_tables,
    default_state_url,
    is_postgresql,
)
from sync_pipelines.sync.audit_store import AuditLog
from sync_pipelines.sync.last_written_store import LastWritten
from sync_pipelines.sync.lease import Leases
from sync_pipelines.sync.outcome_store import OutcomeStore
from sync_pipelines.sync.plan_store import PlanStore, SavedPlan
from sync_pipelines.sync.settlement import SettledBatch, SettledChange, Settlement, SettlementStore
from sync_pipelines.sync.state_schema import (
    APPLIED,
    FAILED,
    INTERRUPTED,
    KEY_TABLES,
    NOT_APPLIED,
    STATE_SETTING,
    StateWriteRefused,
    audit_log,
    batches_in_flight,
    last_written,
    metadata,
    record_outcomes,
    runs,
    saved_plans,
    stored_key,
)
from sync_pipelines.sync.write_ahead import WriteAhead


class SyncStateStore:
    """The project's own state for every target: one database, opened once, and its parts, each over the same
    engine. A caller reaches the part it needs:

    - ``audit``: the audit log (``sync.audit_store``);
    - ``last_written``: the values last written, for delta syncs and record history (``sync.last_written_store``);
    - ``write_ahead``: a batch's write-ahead row, and its audit in the transaction that removes it
      (``sync.write_ahead``);
    - ``settlement``: what killed runs left in flight, judged and settled (``sync.settlement``);
    - ``plans``: plans saved for review (``sync.plan_store``);
    - ``history``: runs and their per-record outcomes, and a record's history (``sync.outcome_store``);
    - ``leases``: one writing run per target (``sync.lease``).

    The store itself only opens the database (its tables, indexes and key columns) and prunes it: retention
    spans every part's tables in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, metadata)
        self._widen_key_columns()
        self.audit = AuditLog(engine)
        self.last_written = LastWritten(engine)
        self.write_ahead = WriteAhead(engine, self.audit, self.last_written)
        self.settlement = SettlementStore(engine, self.audit, self.last_written)
        self.plans = PlanStore(engine)
        self.history = OutcomeStore(engine)
        self.history.add_indexes()
        self.leases = Leases(engine)

    def _widen_key_columns(self) -> None:
        """A state database made when keys were ``VARCHAR(255)``: make them ``TEXT`` (PostgreSQL; a catalog-only
        change, no table rewrite). SQLite never enforced the length."""
        if not is_postgresql(self.engine):
            return
        query = sa.text(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name IN ('sync_audit', 'sync_last_written') AND column_name = 'record_key' "
            "AND data_type <> 'text'"
        )
        with self.engine.begin() as connection:
            for (table,) in connection.execute(query).all():
                if table in KEY_TABLES:
                    connection.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN record_key TYPE text")

    @classmethod
    def from_url(cls, url: str | None) -> SyncStateStore:
        return cls(create_database_engine(url or default_state_url(), STATE_SETTING))

    # -- retention ----------------------------------------------------------------------------------------
    def prune(self, cutoffs: Mapping[str, datetime], dry_run: bool = False) -> dict[str, int]:
        """Delete (or, with ``dry_run``, count) what is older than its cutoff, in one transaction: ``audit``
        rows by ``recorded_at``, saved ``plans`` by ``created_at``, ``write_ahead`` rows (batches a killed run
        left in flight whose records no run read again) by ``started_at``, record history's ``outcomes`` and
        ``runs`` by ``recorded_at``. Old values of the targets' fields live in these rows, so they go when the
        organisation's retention says so; returns the counts."""
        tables = {
            "audit": (audit_log, audit_log.c.recorded_at),
            "outcomes": (record_outcomes, record_outcomes.c.recorded_at),
            "runs": (runs, runs.c.recorded_at),
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


__all__ = [
    "APPLIED",
    "FAILED",
    "INTERRUPTED",
    "NOT_APPLIED",
    "STATE_SETTING",
    "SavedPlan",
    "SettledBatch",
    "SettledChange",
    "Settlement",
    "StateWriteRefused",
    "SyncStateStore",
    "audit_log",
    "batches_in_flight",
    "default_state_url",
    "last_written",
    "saved_plans",
    "stored_key",
]
