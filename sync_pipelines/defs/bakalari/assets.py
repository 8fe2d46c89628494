"""The ``bakalari_entities`` asset: the school's classes, subjects, teachers, students and enrollments in EduRPG.

One run: ``sync_start`` in EduRPG's ``"SystemLog"``; the operator account's lookups (once per run, every
shard); the run's shards' student accounts, concurrently, each token rotated and committed first; a field-by-
field plan against EduRPG's rows; the plan applied in batches of one transaction each; vanished entities
reported (never deleted); then ``sync_ok`` with the counts, or ``sync_fail`` with the error.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from sync_pipelines.core.redaction import Redactor
from sync_pipelines.core.shards import SHARD_COUNT, selected_shards, shard_of
from sync_pipelines.defs.bakalari.accounts import (
    FAILING_CATEGORIES,
    NEEDS_LOGIN,
    OperatorSession,
    StudentReading,
    TokenStore,
    read_school,
    read_students,
)
from sync_pipelines.defs.bakalari.desired import DesiredEntities, build_desired, kind_of, record_shard
from sync_pipelines.defs.bakalari.edurpg import EduRpgStore, VanishedEntity
from sync_pipelines.defs.bakalari.resources import BakalariResource, EduRpgDatabase
from sync_pipelines.defs.bakalari.writer import EntityWriter
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.shared.sync_reporting import log_plan, report_applied, report_dry_run
from sync_pipelines.sync import SyncRunConfig, apply_plan, plan_changes
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import Action, Skip, SyncPlan
from sync_pipelines.sync.report import PREVIEW_ROWS

TARGET = "bakalari_entities"
DEFAULT_BATCH_SIZE = 500
# Student accounts opened at once per request slot: enough to keep every slot busy while tokens are committed.
ACCOUNTS_PER_SLOT = 3
PLURALS = {"Class": "classes", "Subject": "subjects", "User": "users", "Enrollment": "enrollments"}


@dataclass
class BakalariSyncOutcome:
    plan: SyncPlan
    result: ApplyResult | None
    entities: DesiredEntities
    readings: list[StudentReading]
    requests: int = 0
    retries: int = 0
    read_seconds: float = 0.0
    seconds: float = 0.0
    rows_written: Counter[str] = field(default_factory=Counter)
    vanished_reported: list[VanishedEntity] = field(default_factory=list)
    reconciled: dict[str, int] = field(default_factory=dict)

    @property
    def needs_login(self) -> list[str]:
        return [r.account.bakalari_id for r in self.readings if r.category == NEEDS_LOGIN]

    def entity_counts(self) -> dict[str, int]:
        """EduRPG's own result names: ``classesCreated``, ``classesUpdated``, ``usersCreated``, ..."""
        failures = self.result.failures if self.result else {}
        counts = {f"{plural}{verb}": 0 for plural in PLURALS.values() for verb in ("Created", "Updated")}
        for record in self.plan.to_write:
            if record.key in failures:
                continue
            verb = "Created" if record.action is Action.CREATE else "Updated"
            counts[f"{PLURALS[kind_of(record.key)]}{verb}"] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """What ``sync_ok`` / ``sync_fail`` carry besides ``runId``."""
        return {
            **self.entity_counts(),
            "studentsRead": sum(1 for reading in self.readings if reading.ok),
            "studentsNeedingLogin": len(self.needs_login),
            "skipped": self.plan.skip_counts(),
            "vanished": len(self.entities.vanished),
            "vanishedNew": sum(1 for entity in self.entities.vanished if not entity.already_reported),
            "rowsWritten": sum(self.rows_written.values()),
            "requests": self.requests,
            "durationMs": round(self.seconds * 1000),
        }

    def metadata(self) -> dict[str, Any]:
        numeric = {
            "requests_made": self.requests,
            "retries": self.retries,
            "students_read": sum(1 for reading in self.readings if reading.ok),
            "students_needing_login": len(self.needs_login),
            "token_rotations": sum(reading.rotations for reading in self.readings),
            "vanished": len(self.entities.vanished),
            "rows_written": sum(self.rows_written.values()),
            "read_seconds": round(self.read_seconds, 3),
            "sync_seconds": round(self.seconds, 3),
            **self.entity_counts(),
        }
        metadata: dict[str, Any] = {
            name: dg.MetadataValue.float(value) if isinstance(value, float) else dg.MetadataValue.int(value)
            for name, value in numeric.items()
        }
        metadata["needs_login_students"] = dg.MetadataValue.json(self.needs_login[:PREVIEW_ROWS])
        if self.entities.vanished:
            lines = ["| record | EduRPG id | name | reported since |", "| --- | --- | --- | --- |"]
            lines += [
                f"| {e.key} | {e.internal_id} | {e.name or ''} | {e.metadata.get('vanishedAt') or 'this run'} |"
                for e in self.entities.vanished[:PREVIEW_ROWS]
            ]
            metadata["vanished_entities"] = dg.MetadataValue.md("\n".join(lines))
        if self.reconciled:
            metadata["settled_interrupted_changes"] = dg.MetadataValue.json(self.reconciled)
        return metadata


def _shards_label(shards: set[str]) -> str:
    return "all" if len(shards) == SHARD_COUNT else ",".join(sorted(shards))


async def _sync(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    bakalari: BakalariResource,
    edurpg_database: EduRpgDatabase,
    sync_state: SyncStateResource,
    store: EduRpgStore,
    shards: set[str],
    started: float,
) -> BakalariSyncOutcome:
    state = sync_state.store()
    async with bakalari.client(context.log) as client:
        operator = OperatorSession(client, bakalari.username, bakalari.password)
        await operator.login()  # refused: the run ends here, before any student account is touched
        accounts = config.take([a for a in store.student_accounts() if shard_of(a.bakalari_id) in shards])
        tokens = TokenStore(store, edurpg_database.token_workers())
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
        for failed in outcomes:
            if isinstance(failed, BaseException):
                raise failed
        school, (readings, read_seconds), snapshot = outcomes
        requests, retries = client.api.requests_made, client.api.retries
    context.log.info(
        f"operator account: {len(school.lookups.classes)} classes, {len(school.lookups.groups)} groups, "
        f"{len(school.lookups.subjects)} subjects, {len(school.lookups.teachers)} teachers; "
        f"{len(accounts)} student account(s) read in {read_seconds:.1f} s; {requests} requests; "
        f"{tokens.saved} rotated token(s) committed to EduRPG"
    )
    entities = build_desired(school, readings, snapshot)
    account_skips = [Skip(r.key, r.category, r.reason or "") for r in readings if r.category]
    plan = plan_changes(TARGET, entities.desired, entities.current, [*account_skips, *entities.skips])
    outcome = BakalariSyncOutcome(plan, None, entities, readings, requests, retries, read_seconds)
    if len(shards) == SHARD_COUNT and config.limit is None and state.pending(TARGET):
        # Changes a killed run left in flight, settled by what EduRPG holds now (a complete run sees every key).
        outcome.reconciled = state.reconcile_pending(TARGET, entities.current, remember_written=False)
        context.log.warning(f"settled the changes an interrupted run left in flight: {outcome.reconciled}")
    if config.dry_run:
        outcome.seconds = time.monotonic() - started
        return outcome
    log_plan(context, plan, dry_run=False)
    writer = EntityWriter(store.engine, entities.depends_on)
    outcome.result = await apply_plan(
        plan,
        writer,
        state=state,
        run_id=context.run_id,
        batch_size=config.effective_batch_size(DEFAULT_BATCH_SIZE),
        batch_delay_seconds=config.batch_delay_seconds,
        log=context.log,
    )
    outcome.result.failures.update(
        {r.key: f"{r.category}: {r.reason}" for r in readings if r.category in FAILING_CATEGORIES}
    )
    outcome.rows_written = writer.rows_written
    outcome.vanished_reported = store.report_vanished(
        entities.vanished, context.run_id, include_reported=config.full_refresh
    )
    outcome.seconds = time.monotonic() - started
    return outcome


async def sync_entities(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    bakalari: BakalariResource,
    edurpg_database: EduRpgDatabase,
    sync_state: SyncStateResource,
) -> BakalariSyncOutcome:
    """The whole sync, bracketed by ``sync_start`` and ``sync_ok``/``sync_fail`` (not in dry runs)."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    shards = selected_shards(context)
    store = edurpg_database.store()
    log_events = not config.dry_run
    if log_events:
        store.log_event(
            "INFO", "sync_start", context.run_id, {"shards": _shards_label(shards), "startedAt": started_at}
        )
    try:
        outcome = await _sync(context, config, bakalari, edurpg_database, sync_state, store, shards, started)
    except Exception as error:
        if log_events:
            store.log_event(
                "ERROR",
                "sync_fail",
                context.run_id,
                {
                    "error": Redactor([bakalari.password])(f"{type(error).__name__}: {error}")[:2000],
                    "durationMs": round((time.monotonic() - started) * 1000),
                    "startedAt": started_at,
                },
            )
        raise
    if log_events:
        assert outcome.result is not None
        details = {**outcome.summary(), "startedAt": started_at, "shards": _shards_label(shards)}
        failures = outcome.result.failure_list()
        if failures:
            details["error"] = f"{len(failures)} record(s) could not be synced; the next run retries them"
            details["failed"] = [{"record": key, "reason": reason[:300]} for key, reason in failures[:50]]
            store.log_event("ERROR", "sync_fail", context.run_id, details)
        else:
            store.log_event("INFO", "sync_ok", context.run_id, details)
    if outcome.needs_login:
        context.log.warning(
            f"{len(outcome.needs_login)} student(s) must log in to EduRPG again (their Bakaláři token no longer "
            f"works); skipped, nothing deleted: {', '.join(outcome.needs_login[:20])}"
        )
    if outcome.entities.vanished:
        context.log.warning(
            f"{len(outcome.entities.vanished)} entit(ies) are gone from Bakaláři and kept in EduRPG "
            f"({len(outcome.vanished_reported)} reported in SystemLog this run)"
        )
    return outcome


@sync_asset(
    name=TARGET,
    group="bakalari",
    pool="bakalari_api",
    fresh_within=timedelta(minutes=30),
    kinds={"rest", "postgres"},
    description="Bakaláři's classes, subjects, teachers, students and enrollments, upserted into EduRPG "
    "(tracked by ExternalRef, never deleted). Shards batch the student accounts; the operator's lookups are "
    "read and written in every run.",
)
def bakalari_entities(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    bakalari: BakalariResource,
    edurpg_database: EduRpgDatabase,
    sync_state: SyncStateResource,
):
    outcome = asyncio.run(sync_entities(context, config, bakalari, edurpg_database, sync_state))
    if outcome.result is None:
        yield from report_dry_run(context, outcome.plan, outcome.metadata())
        return
    yield from report_applied(
        context, outcome.plan, outcome.result, selected_shards(context), record_shard, outcome.metadata()
    )
