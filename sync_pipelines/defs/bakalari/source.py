"""The Bakaláři sync as a source for the engine: the school as Bakaláři shows it, EduRPG's rows as they are.

Reading: the operator account's lookups (once per run, every shard: what that account sees, a teacher's own
lessons or more); the run's shards' student accounts,
concurrently, each token rotated and committed first; EduRPG's rows, all at the same time. A batch is written
in one transaction (``writer``). Vanished entities are reported in ``"SystemLog"``, never deleted. A real run is
bracketed by ``sync_start`` and ``sync_ok``/``sync_fail`` rows in ``"SystemLog"``, shaped as EduRPG's own sync
writes them (``sync_ok``: ``{runId, result: {success, classesCreated, ..., errors, runId, startedAt, completedAt,
durationMs}, durationMs}``; ``sync_fail``: ``{runId, errors, durationMs}``), plus keys of this sync's own that
EduRPG ignores; a dry run writes none.
Rotated refresh tokens are stored in every run, dry runs included: a token rotated and not stored is lost, and
the student would have to log in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.redaction import describe_error, redact
from sync_pipelines.defs.bakalari.accounts import (
    FAILING_CATEGORIES,
    NEEDS_LOGIN,
    OperatorSession,
    StudentReading,
    TokenStore,
    read_school,
    read_students,
)
from sync_pipelines.defs.bakalari.client import BakalariClient
from sync_pipelines.defs.bakalari.desired import REF, DesiredEntities, build_desired, kind_of, record_shard
from sync_pipelines.defs.bakalari.edurpg import REF_TYPES, EduRpgSnapshot, EduRpgStore, VanishedEntity
from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase
from sync_pipelines.defs.bakalari.stored_token import ACCESS
from sync_pipelines.defs.bakalari.writer import EntityWriter
from sync_pipelines.defs.shared.api_source import ApiSource
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.outcome import Current, Desired, SyncOutcome
from sync_pipelines.sync.plan import Action, FieldChange, PlannedRecord, Skip, Value
from sync_pipelines.sync.report import PREVIEW_ROWS
from sync_pipelines.sync.shards import SHARD_COUNT, shard_of

TARGET = "bakalari_entities"
DEFAULT_BATCH_SIZE = 500
# Student accounts opened at once per request slot: enough to keep every slot busy while tokens are committed.
ACCOUNTS_PER_SLOT = 3
PLURALS = {"Class": "classes", "Subject": "subjects", "User": "users", "Enrollment": "enrollments"}


def target_rows(snapshot: EduRpgSnapshot, keys: list[str]) -> dict[str, dict[str, Value] | None]:
    """The rows (with their ``ref``) that ``keys`` map to through ``"ExternalRef"``; ``None``: no such row."""
    tables = {"Class": snapshot.classes, "Subject": snapshot.subjects, "User": snapshot.users}
    enrollments = {row["id"]: row for row in snapshot.enrollments.values()}
    values: dict[str, dict[str, Value] | None] = {}
    for key in keys:
        kind, _, external = key.partition(":")
        if kind == "Enrollment":
            bakalari_id, _, subject_id = external.rpartition("-")
            user_ref, subject_ref = snapshot.ref("user", bakalari_id), snapshot.ref("subject", subject_id)
            if user_ref is None or subject_ref is None:
                values[key] = None
                continue
            pair = (user_ref["internalId"], subject_ref["internalId"])
            ref = snapshot.ref("enrollment", "-".join(pair))
            row = enrollments.get(ref["internalId"]) if ref else snapshot.enrollments.get(pair)
        else:
            ref = snapshot.ref(REF_TYPES[kind], external)
            row = tables[kind].get(ref["internalId"]) if ref else None
        held = {"internalId": ref["internalId"], "metadata": ref["metadata"]} if ref else None
        values[key] = None if row is None else {**row, REF: held}
    return values


def _shards_label(shards: frozenset[str]) -> str:
    return "all" if len(shards) == SHARD_COUNT else ",".join(sorted(shards))


class BakalariSource(ApiSource):
    target = TARGET
    source_name = "Bakaláři"
    default_batch_size = DEFAULT_BATCH_SIZE
    remembers_written = False
    # A person's name and e-mail go to EduRPG, and to the state database for review and undo, not to reports.
    # An enrollment's name is its student's and subject's ("Nováková Eva – Math").
    personal_fields = {"User": ("name", "email"), "Enrollment": ("name",)}

    def __init__(self, bakalari: BakalariResource, edurpg_database: EduRpgDatabase) -> None:
        self.bakalari = bakalari
        self.edurpg_database = edurpg_database
        self.store: EduRpgStore | None = None
        self.client: BakalariClient | None = None
        self.entities = DesiredEntities()
        self.readings: list[StudentReading] = []
        self.writer: EntityWriter | None = None
        self.students_seconds = 0.0
        self.started_at = ""
        self.started_monotonic = 0.0
        self.vanished_reported: list[VanishedEntity] = []

    def shard_of(self, key: str) -> str:
        return record_shard(key)

    def settles(self, scope: RunScope) -> bool:
        # EduRPG's rows are read whole, but only a complete run has read every account whose rows may be in flight.
        return scope.complete

    @contextlib.asynccontextmanager
    async def session(self, scope: RunScope) -> AsyncIterator[None]:
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self.started_monotonic = time.monotonic()
        self.store = self.edurpg_database.store(prepare=True)
        if self.store.created_external_ref:
            scope.log.warning(
                "created EduRPG's \"ExternalRef\" table (EDURPG_CREATE_EXTERNAL_REF=true): EduRPG's migrations "
                "do not create it"
            )
        yield

    async def started(self, scope: RunScope) -> None:
        assert self.store is not None
        self.store.log_event(
            "INFO",
            "sync_start",
            scope.run_id,
            {"shards": _shards_label(scope.shards), "startedAt": self.started_at},
        )

    async def read_desired(self, scope: RunScope) -> Desired:
        store = self.store
        assert store is not None
        async with self.bakalari.client(scope.log) as client:
            operator = OperatorSession(client, self.bakalari.username, self.bakalari.password)
            await operator.login()  # refused: the run ends here, before any student account is touched
            accounts = scope.config.take(
                [a for a in store.student_accounts() if shard_of(a.bakalari_id) in scope.shards]
            )
            tokens = TokenStore(store, self.edurpg_database.token_workers())
            in_flight = client.api.limits.max_concurrency * ACCOUNTS_PER_SLOT
            try:
                # The operator's lookups, the students' accounts and EduRPG's rows are read at the same time. Every
                # student read runs to its end even if another part fails: stopping one mid-refresh could lose a token.
                outcomes = await asyncio.gather(
                    read_school(operator),
                    read_students(client, accounts, tokens, in_flight),
                    asyncio.to_thread(store.snapshot),
                    return_exceptions=True,
                )
            finally:
                tokens.close()
                self.record_api(client.api)
        school, students_read, snapshot = outcomes
        for failed in outcomes:
            if isinstance(failed, BaseException):
                raise failed
        assert not isinstance(school, BaseException) and not isinstance(snapshot, BaseException)
        assert not isinstance(students_read, BaseException)
        self.readings, self.students_seconds = students_read
        scope.log.info(
            f"operator account sees {len(school.lookups.classes)} classes, {len(school.lookups.groups)} group "
            f"entries, {len(school.lookups.subjects)} subjects, {len(school.lookups.teachers)} teachers; "
            f"{len(accounts)} student account(s) read in {self.students_seconds:.1f} s; {self.requests} requests; "
            f"{tokens.saved} rotated token(s) committed to EduRPG"
        )
        self.entities = entities = build_desired(school, self.readings, snapshot, complete=scope.complete)
        self._warn(scope)
        account_skips = [Skip(r.key, r.category, r.reason or "") for r in self.readings if r.category]
        failing = {
            r.key: f"{r.category}: {r.reason}" for r in self.readings if r.category in FAILING_CATEGORIES
        }
        return Desired(dict(entities.desired), [*account_skips, *entities.skips], failing)

    def _warn(self, scope: RunScope) -> None:
        needs_login = self.needs_login
        if needs_login:
            scope.log.warning(
                f"{len(needs_login)} student(s) must log in to EduRPG again (their Bakaláři token no longer "
                f"works); skipped, nothing deleted: {', '.join(needs_login[:20])}"
            )
        if self.entities.vanished:
            scope.log.warning(
                f"{len(self.entities.vanished)} entit(ies) are gone from Bakaláři and kept in EduRPG"
                + ("" if scope.dry_run else "; new ones are reported in SystemLog")
            )

    async def read_current(self, keys: list[str]) -> Current:
        # Only the records this run read (every desired record is): a key of an account not read this run (its
        # token revoked, say) is left out, not answered None ("no such row"), so a change an interrupted run left
        # in flight for it stays in flight rather than being settled as not applied.
        current = self.entities.current
        values: dict[str, dict[str, Value] | None] = {key: current[key] for key in keys if key in current}
        return Current(values)

    def write(self, batch: list[PlannedRecord]) -> dict[str, str]:
        if self.writer is None:
            assert self.store is not None
            self.writer = EntityWriter(self.store.engine, self.entities.depends_on)
        return self.writer(batch)

    # -- reviewed plans and undo: EduRPG alone, no Bakaláři account read -----------------------------------
    async def read_target(self, keys: list[str]) -> Current:
        assert self.store is not None
        return Current(target_rows(await asyncio.to_thread(self.store.snapshot), keys))

    def write_if_unchanged(self, batch: list[PlannedRecord]) -> dict[str, str]:
        if self.writer is None:
            assert self.store is not None
            self.writer = EntityWriter(self.store.engine, {}, conditional=True)
        return self.writer(batch)

    def undo_changes(self, key: str, changes: list[FieldChange]) -> tuple[list[FieldChange], str | None]:
        """Rows a run created are kept (EduRPG's cascades would take the game history with them), and so are
        the ``"ExternalRef"`` rows it created: listed for a person to decide. Updated fields are restored."""
        if any(change.field == "id" and change.old is None for change in changes):
            return [], "created by the run; not deleted (EduRPG's cascades would delete its game history)"
        new_refs = [change for change in changes if change.field == REF and change.old is None]
        undone = [change for change in changes if change not in new_refs]
        return undone, ("its ExternalRef row was created by the run and is kept" if new_refs else None)

    async def applied(self, scope: RunScope, outcome: SyncOutcome) -> None:
        assert self.store is not None
        self.vanished_reported = self.store.report_vanished(
            self.entities.vanished, scope.run_id, include_reported=scope.config.full_refresh
        )
        assert outcome.result is not None  # called after a write
        failures = outcome.result.failure_list()
        errors = [f"{key}: {reason[:300]}" for key, reason in failures[:50]]
        result = self.edurpg_result(outcome, scope.run_id, errors)
        # EduRPG's own shape first ({runId, result, durationMs}); the rest are this sync's keys, which it ignores.
        details = {
            "result": result,
            "durationMs": result["durationMs"],
            **self.summary(outcome),
            "startedAt": self.started_at,
            "shards": _shards_label(scope.shards),
        }
        if failures:
            details["errors"] = errors
            details["error"] = f"{len(failures)} record(s) could not be synced; the next run retries them"
            details["failed"] = [{"record": key, "reason": reason[:300]} for key, reason in failures[:50]]
            self.store.log_event("ERROR", "sync_fail", scope.run_id, details)
        else:
            self.store.log_event("INFO", "sync_ok", scope.run_id, details)

    async def stopped(self, scope: RunScope, error: BaseException) -> None:
        if self.store is None:
            return
        # The one redactor of every path out: the environment's secrets and every database password, and the
        # operator's password even where it did not come from the environment.
        message = redact(f"{type(error).__name__}: {error}", [self.bakalari.password])[:2000]
        try:
            self.store.log_event(
                "ERROR",
                "sync_fail",
                scope.run_id,
                {
                    "errors": [message],
                    "durationMs": round((time.monotonic() - self.started_monotonic) * 1000),
                    "error": message,
                    "startedAt": self.started_at,
                },
            )
        except SQLAlchemyError as failed:
            # EduRPG unreachable (the reason the run stops, often): the run's own error must still be the one raised.
            scope.log.warning(
                f'"SystemLog" sync_fail could not be written to EduRPG: {describe_error(failed)}'
            )

    # -- figures -------------------------------------------------------------------------------------------
    @property
    def needs_login(self) -> list[str]:
        return [r.account.bakalari_id for r in self.readings if r.category == NEEDS_LOGIN]

    @property
    def read_with_access_token(self) -> int:
        return sum(1 for reading in self.readings if reading.ok and reading.token_kind == ACCESS)

    @property
    def rows_written(self) -> Counter[str]:
        return self.writer.rows_written if self.writer is not None else Counter()

    def entity_counts(self, outcome: SyncOutcome) -> dict[str, int]:
        """EduRPG's own result names: ``classesCreated``, ``classesUpdated``, ``usersCreated``, ..."""
        failures = outcome.failures
        counts = {f"{plural}{verb}": 0 for plural in PLURALS.values() for verb in ("Created", "Updated")}
        if outcome.result is None:
            return counts
        for record in outcome.plan.to_write:
            if record.key in failures:
                continue
            verb = "Created" if record.action is Action.CREATE else "Updated"
            counts[f"{PLURALS[kind_of(record.key)]}{verb}"] += 1
        return counts

    def edurpg_result(self, outcome: SyncOutcome, run_id: str, errors: list[str]) -> dict[str, Any]:
        """EduRPG's ``SyncResult`` (``app/lib/services/sync-bakalari.ts``), as its ``sync_ok`` carries it."""
        duration_ms = round(outcome.seconds * 1000)
        return {
            "success": not errors,
            **self.entity_counts(outcome),
            "errors": errors,
            "runId": run_id,
            "startedAt": self.started_at,
            "completedAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "durationMs": duration_ms,
        }

    def summary(self, outcome: SyncOutcome) -> dict[str, Any]:
        """This sync's own figures, which ``sync_ok`` / ``sync_fail`` carry next to EduRPG's keys."""
        vanished = self.entities.vanished
        return {
            "studentsRead": sum(1 for reading in self.readings if reading.ok),
            "studentsReadWithAccessToken": self.read_with_access_token,
            "studentsNeedingLogin": len(self.needs_login),
            "gradeDefaulted": list(self.entities.grade_defaulted),
            "skipped": outcome.plan.skip_counts(),
            "vanished": len(vanished),
            "vanishedNew": sum(1 for entity in vanished if not entity.already_reported),
            "rowsWritten": sum(self.rows_written.values()),
            "requests": self.requests,
            "durationMs": round(outcome.seconds * 1000),
        }

    def metadata(self, outcome: SyncOutcome) -> dict[str, Any]:
        numeric = {
            "students_read": sum(1 for reading in self.readings if reading.ok),
            "students_needing_login": len(self.needs_login),
            "token_rotations": sum(reading.rotations for reading in self.readings),
            "students_read_with_access_token": self.read_with_access_token,
            "students_with_access_token": sum(1 for r in self.readings if r.token_kind == ACCESS),
            "grade_defaulted": len(self.entities.grade_defaulted),
            "vanished": len(self.entities.vanished),
            "rows_written": sum(self.rows_written.values()),
            "read_seconds": round(self.students_seconds, 3),
            **self.entity_counts(outcome),
        }
        metadata: dict[str, Any] = {
            name: dg.MetadataValue.float(value) if isinstance(value, float) else dg.MetadataValue.int(value)
            for name, value in numeric.items()
        }
        metadata.update(self.api_metadata())
        metadata["needs_login_students"] = dg.MetadataValue.json(self.needs_login[:PREVIEW_ROWS])
        # Classes whose abbreviation has no leading digits: synced with EduRPG's default grade 1.
        metadata["grade_defaulted_classes"] = dg.MetadataValue.json(
            self.entities.grade_defaulted[:PREVIEW_ROWS]
        )
        if self.entities.vanished:
            lines = ["| record | EduRPG id | name | reported since |", "| --- | --- | --- | --- |"]
            shown = self.disclosure()
            lines += [
                f"| {e.key} | {e.internal_id} | {shown.value(e.key, 'name', e.name) or ''} | "
                f"{e.metadata.get('vanishedAt') or 'this run'} |"
                for e in self.entities.vanished[:PREVIEW_ROWS]
            ]
            metadata["vanished_entities"] = dg.MetadataValue.md("\n".join(lines))
        if outcome.settlement and outcome.result is not None:
            metadata["settled_interrupted_changes"] = dg.MetadataValue.json(outcome.settlement.counts())
        return metadata
