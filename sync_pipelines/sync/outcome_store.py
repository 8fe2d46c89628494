"""What each run was and what it did to each record besides writing it, kept for record history.

The audit log (``sync_audit``) holds every write a run made or tried. "Why does the target hold this value?" needs
more: which kind of run it was (a sync, a dry run, the apply of a saved plan, an undo), and what a run did to a
record it did not write: planned a change (a dry run), skipped it and why, or could not use the source's answer
for it (a row error). ``sync_runs`` keeps one row per run and ``sync_record_outcomes`` one per such record (per
field for a planned change), by record id, personal values left out.

Records a run found unchanged are not kept: a row per record per run would be 36 million rows a year for 100,000
ZLV users synced nightly, and a history reads the record on both sides live instead (``sync.record_history``).
Both tables are pruned with the audit log, by ``SYNC_AUDIT_RETENTION_DAYS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import serialized_transaction
from sync_pipelines.core.redaction import Redactor, environment_secrets
from sync_pipelines.sync.plan import Value
from sync_pipelines.sync.state_schema import (
    HISTORY_INDEXES,
    OUTCOME_COLUMNS,
    audit_log,
    chunks,
    copy_field,
    copy_in,
    decode_value,
    encode_value,
    record_outcomes,
    refused_as_one_line,
    runs,
    storable_text,
    uses_copy,
    utc_now,
)

AUDITED, OUTCOME = "audit", "outcome"
# One outcome as stored, after its run and target: key, outcome, category, field, old and new (JSON), reason.
OutcomeRow = tuple[str, str, str | None, str | None, str | None, str | None, str | None]
# Keys asked about at once: a record's history names a handful (an RT user and its student).
KEY_CHUNK = 500


@dataclass(frozen=True)
class RunRecord:
    """One run of a sync as record history names it."""

    run_id: str
    target: str
    dry_run: bool
    plan_id: str | None = None  # the saved plan it applied (``apply_plan_id``)
    undo_of: str | None = None  # the run it reversed
    recorded_at: datetime | None = None

    @property
    def kind(self) -> str:
        """``sync``, ``dry run``, ``apply of plan X``, ``undo of run Y`` (``undo preview`` when dry), ..."""
        if self.plan_id:
            what = f"apply of plan {self.plan_id}" + (
                f" (undo of run {self.undo_of})" if self.undo_of else ""
            )
            return f"dry run of plan {self.plan_id}" if self.dry_run else what
        if self.undo_of:
            return f"undo preview of run {self.undo_of}" if self.dry_run else f"undo of run {self.undo_of}"
        return "dry run" if self.dry_run else "sync"


@dataclass(frozen=True)
class RecordOutcome:
    """What a run did to one record (one field of it, for a planned change) without writing it."""

    key: str
    outcome: str  # PLANNED, SKIPPED or ROW_ERROR
    category: str | None = None
    field: str | None = None
    old: Value = None
    new: Value = None
    reason: str | None = None


@dataclass(frozen=True)
class HistoryRow:
    """One stored row of a record's history: an audit row (``kept == AUDITED``; ``status`` applied, failed,
    conflict or not_applied) or an outcome (``kept == OUTCOME``; ``status`` planned, skipped or row_error)."""

    kept: str
    id: int
    run_id: str
    key: str
    field: str | None
    old: Value
    new: Value
    status: str
    category: str | None
    reason: str | None
    at: datetime


def _utc(moment: datetime) -> datetime:
    """In UTC: SQLite gives back naive datetimes (written in UTC), PostgreSQL the session's time zone."""
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Texts:
    """Free text (reasons, categories) as it is kept: secrets masked, at most 2,000 characters. A run's skips
    share a few reasons, so each distinct one is masked once."""

    def __init__(self) -> None:
        self._redact = Redactor(environment_secrets())
        self._seen: dict[str, str] = {}

    def __call__(self, value: str | None) -> str | None:
        if value is None:
            return None
        kept = self._seen.get(value)
        if kept is None:
            kept = self._seen[value] = storable_text(self._redact(value)[:2000])
        return kept


class OutcomeStore:
    """Keeps runs and their per-record outcomes; reads a record's history (its audit rows and outcomes)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_indexes(self) -> None:
        """A state database made before record history has its tables now (``create_tables``) but not the index
        on ``sync_audit``'s keys: built once, here (on PostgreSQL a short lock on ``sync_audit``, a few seconds
        per million rows); a database that has it is only read."""
        if sa.inspect(self.engine).has_index(audit_log.name, str(HISTORY_INDEXES[0].name)):
            return
        with serialized_transaction(self.engine, "sync_pipelines tables") as connection:
            for index in HISTORY_INDEXES:
                index.create(connection, checkfirst=True)

    @refused_as_one_line
    def record_run(self, run: RunRecord, outcomes: Iterable[RecordOutcome]) -> None:
        """Keep ``run`` (replacing a row of the same id) and its outcomes, in one transaction."""
        now = utc_now()
        text = _Texts()
        rows: list[OutcomeRow] = [
            (
                storable_text(outcome.key),
                outcome.outcome,
                text(outcome.category),
                None if outcome.field is None else storable_text(outcome.field),
                encode_value(outcome.old),
                encode_value(outcome.new),
                text(outcome.reason),
            )
            for outcome in outcomes
        ]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(runs).where(runs.c.run_id == run.run_id))
            connection.execute(
                sa.insert(runs).values(
                    run_id=run.run_id,
                    target=run.target,
                    dry_run=run.dry_run,
                    plan_id=run.plan_id,
                    undo_of=run.undo_of,
                    recorded_at=now,
                )
            )
            self.append(connection, run, rows, now)

    @staticmethod
    def append(connection: sa.Connection, run: RunRecord, rows: Sequence[OutcomeRow], now: datetime) -> None:
        """Append ``run``'s outcome rows in the caller's transaction: on PostgreSQL one ``COPY``."""
        if not rows:
            return
        if uses_copy(connection):
            prefix = f"{copy_field(run.run_id)}\t{copy_field(run.target)}\t"
            suffix = f"\t{now.isoformat()}\n"
            text = "".join(prefix + "\t".join(map(copy_field, row)) + suffix for row in rows)
            copy_in(connection, record_outcomes.name, OUTCOME_COLUMNS, text)
            return
        names = OUTCOME_COLUMNS[2:-1]
        values = [
            {
                "run_id": run.run_id,
                "target": run.target,
                **dict(zip(names, row, strict=True)),
                "recorded_at": now,
            }
            for row in rows
        ]
        for chunk in chunks(values):
            connection.execute(sa.insert(record_outcomes), chunk)

    # -- reads ------------------------------------------------------------------------------------------------
    def rows(self, target: str, keys: Iterable[str]) -> list[HistoryRow]:
        """Every audit row and outcome of ``keys`` in ``target``, found through the index on their keys."""
        wanted = sorted({storable_text(key) for key in keys})
        found: list[HistoryRow] = []
        audit = sa.select(
            audit_log.c.id,
            audit_log.c.run_id,
            audit_log.c.record_key,
            audit_log.c.field,
            audit_log.c.old_value,
            audit_log.c.new_value,
            audit_log.c.status,
            audit_log.c.error,
            audit_log.c.recorded_at,
        )
        outcome = sa.select(
            record_outcomes.c.id,
            record_outcomes.c.run_id,
            record_outcomes.c.record_key,
            record_outcomes.c.field,
            record_outcomes.c.old_value,
            record_outcomes.c.new_value,
            record_outcomes.c.outcome,
            record_outcomes.c.category,
            record_outcomes.c.reason,
            record_outcomes.c.recorded_at,
        )
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), KEY_CHUNK):
                chunk = wanted[start : start + KEY_CHUNK]
                query = audit.where(audit_log.c.record_key.in_(chunk), audit_log.c.target == target)
                found += [
                    HistoryRow(
                        AUDITED,
                        row.id,
                        row.run_id,
                        row.record_key,
                        row.field,
                        decode_value(row.old_value),
                        decode_value(row.new_value),
                        row.status,
                        None,
                        row.error,
                        _utc(row.recorded_at),
                    )
                    for row in connection.execute(query)
                ]
                query = outcome.where(
                    record_outcomes.c.record_key.in_(chunk), record_outcomes.c.target == target
                )
                found += [
                    HistoryRow(
                        OUTCOME,
                        row.id,
                        row.run_id,
                        row.record_key,
                        row.field,
                        decode_value(row.old_value),
                        decode_value(row.new_value),
                        row.outcome,
                        row.category,
                        row.reason,
                        _utc(row.recorded_at),
                    )
                    for row in connection.execute(query)
                ]
        return found

    def runs(self, run_ids: Iterable[str]) -> dict[str, RunRecord]:
        """The kept runs among ``run_ids`` (a run from before record history, or one that stopped before its
        plan was made, has none)."""
        wanted = sorted(set(run_ids))
        found: dict[str, RunRecord] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), KEY_CHUNK):
                query = sa.select(runs).where(runs.c.run_id.in_(wanted[start : start + KEY_CHUNK]))
                for row in connection.execute(query):
                    found[row.run_id] = RunRecord(
                        row.run_id,
                        row.target,
                        bool(row.dry_run),
                        row.plan_id,
                        row.undo_of,
                        _utc(row.recorded_at),
                    )
        return found
