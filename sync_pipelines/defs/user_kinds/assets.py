"""The ``user_kinds`` asset: ZLV's ``users.kind``, kept equal to what Portail DF says about each user.

One run: read the users in scope and their current kind (one query), look them all up in Portail DF
concurrently, plan (only users whose kind changes are written), apply in set-based batches, report.
``full_refresh`` has nothing to ignore here: ``users.kind`` is read fresh from ZLV on every run and every user
in scope is compared, so the flag is accepted and changes nothing (it does not force rewrites of unchanged rows,
which would only churn the table).
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from sync_pipelines.core.shards import selected_shards, shard_of
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.shared.sync_reporting import SyncEvent, report_applied, report_dry_run
from sync_pipelines.defs.user_kinds.database import ZlvUser, ZlvUsers
from sync_pipelines.defs.user_kinds.lookups import LookupResults, look_up_users
from sync_pipelines.defs.user_kinds.mapping import (
    AMBIGUOUS,
    INVALID_ANSWER,
    KIND_METADATA_NAMES,
    NO_EMAIL,
    NOT_FOUND,
)
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.sync import SyncRunConfig, SyncStateStore, apply_plan, plan_changes
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import PlannedRecord, Skip, SyncPlan

TARGET = "user_kinds"
DEFAULT_BATCH_SIZE = 1000
LOOKUP_FAILED = "lookup_failed"


@dataclass
class UserKindsOutcome:
    plan: SyncPlan
    result: ApplyResult | None
    lookups: LookupResults
    users_in_scope: int = 0
    read_seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    logins: int = 0
    refreshes: int = 0
    reconciled: dict[str, int] = field(default_factory=dict)

    @property
    def write_seconds(self) -> float:
        return self.result.seconds if self.result else 0.0

    def kind_distribution(self) -> Counter[str]:
        """Kinds Portail DF gave for the users processed (the seed's "Kind distribution")."""
        return Counter(o.kind for o in self.lookups.outcomes.values() if o.kind is not None)


def writer_for(zlv: ZlvUsers):
    """One set-based UPDATE per batch, in the batch's own transaction (``apply_plan`` hands out the batches)."""

    def write(batch: list[PlannedRecord]) -> dict[str, str]:
        return zlv.write_kinds([(record.key, record.desired["kind"]) for record in batch])

    return write


def users_in_scope(users: list[ZlvUser], shards: set[str], config: SyncRunConfig) -> list[ZlvUser]:
    """The run's users: those of its shards, ordered by id, cut to ``limit``."""
    return config.take([user for user in users if shard_of(user.id) in shards])


def build_plan(
    users: list[ZlvUser], lookups: LookupResults, no_email: list[ZlvUser]
) -> tuple[SyncPlan, dict[str, str]]:
    """The plan, and the users that must fail the run: invalid answers and failed lookups."""
    desired: dict[str, dict[str, Any]] = {}
    current: dict[str, dict[str, Any]] = {}
    skips = [Skip(user.id, NO_EMAIL, "the ZLV email is blank") for user in no_email]
    for user in users:
        if user.id in lookups.failures:
            skips.append(Skip(user.id, LOOKUP_FAILED, lookups.failures[user.id]))
            continue
        outcome = lookups.outcomes[user.id]
        if outcome.kind is None:
            skips.append(Skip(user.id, outcome.category or "skipped", outcome.reason))
            continue
        desired[user.id] = {"kind": outcome.kind}
        current[user.id] = {"kind": user.kind}
    failing = {skip.key: skip.reason for skip in skips if skip.category in (INVALID_ANSWER, LOOKUP_FAILED)}
    return plan_changes(TARGET, desired, current, skips), failing


async def sync_user_kinds(
    log: logging.Logger | Any,
    run_id: str,
    config: SyncRunConfig,
    portaildf: PortailDfResource,
    zlv_database: ZlvDatabase,
    state: SyncStateStore,
    shards: set[str],
) -> UserKindsOutcome:
    """The whole sync without Dagster in the way, so the benchmark can time its phases."""
    if config.full_refresh:
        log.info("full_refresh: users.kind is read fresh on every run, so there is nothing to ignore")
    zlv = zlv_database.users()
    started = time.monotonic()
    everyone = zlv.read_users(zlv_database.includes_deleted())
    scope = users_in_scope(everyone, shards, config)
    read_seconds = time.monotonic() - started
    with_email = [user for user in scope if user.email.strip()]
    no_email = [user for user in scope if not user.email.strip()]
    log.info(f"{len(scope)} ZLV user(s) in scope, {len(with_email)} to look up in Portail DF")
    async with portaildf.client(log) as client:
        lookups = await look_up_users(client, with_email, log)
        api = client.api
        logins, refreshes = client.logins, client.refreshes
    log.info(
        f"lookups done: {len(lookups.outcomes)} answered, {len(lookups.failures)} failed, "
        f"in {lookups.seconds:.1f} s ({lookups.rate:.0f}/s)"
    )
    pending = state.pending(TARGET)
    reconciled = {}
    if pending:
        held = zlv.read_kinds(pending)
        reconciled = state.reconcile_pending(
            TARGET, {key: {"kind": kind} for key, kind in held.items()}, remember_written=False
        )
        log.warning(f"settled the changes an interrupted run left in flight: {reconciled}")
    plan, failing = build_plan(with_email, lookups, no_email)
    result = None
    if not config.dry_run:
        counts = plan.counts()
        log.info(
            f"{TARGET}: {counts['update']} to update, {counts['unchanged']} unchanged, {counts['skip']} skipped "
            f"({', '.join(f'{k} {v}' for k, v in sorted(plan.skip_counts().items())) or 'none'})"
        )
        result = await apply_plan(
            plan,
            writer_for(zlv),
            state=state,
            run_id=run_id,
            batch_size=config.effective_batch_size(DEFAULT_BATCH_SIZE),
            batch_delay_seconds=config.batch_delay_seconds,
            remember_written=False,
            log=log,
        )
        result.failures.update(failing)
    return UserKindsOutcome(
        plan,
        result,
        lookups,
        users_in_scope=len(scope),
        read_seconds=read_seconds,
        requests=api.requests_made,
        retries=api.retries,
        logins=logins,
        refreshes=refreshes,
        reconciled=reconciled,
    )


def run_metadata(outcome: UserKindsOutcome) -> dict[str, Any]:
    """Numeric run totals (plotted over time) and the phase timings."""
    plan = outcome.plan
    skips = plan.skip_counts()
    kinds = outcome.kind_distribution()
    lookups = outcome.lookups
    metadata: dict[str, Any] = {
        "processed": dg.MetadataValue.int(len(plan.records)),
        "not_found": dg.MetadataValue.int(skips.get(NOT_FOUND, 0)),
        "ambiguous": dg.MetadataValue.int(skips.get(AMBIGUOUS, 0)),
        "invalid_answer": dg.MetadataValue.int(skips.get(INVALID_ANSWER, 0)),
        "lookup_failed": dg.MetadataValue.int(skips.get(LOOKUP_FAILED, 0)),
        "no_email": dg.MetadataValue.int(skips.get(NO_EMAIL, 0)),
        **{name: dg.MetadataValue.int(kinds.get(kind, 0)) for kind, name in KIND_METADATA_NAMES.items()},
        "lookup_seconds": dg.MetadataValue.float(round(lookups.seconds, 3)),
        "lookups_per_second": dg.MetadataValue.float(round(lookups.rate, 1)),
        "read_seconds": dg.MetadataValue.float(round(outcome.read_seconds, 3)),
        "requests_made": dg.MetadataValue.int(outcome.requests),
        "retries": dg.MetadataValue.int(outcome.retries),
        "logins": dg.MetadataValue.int(outcome.logins),
        "token_refreshes": dg.MetadataValue.int(outcome.refreshes),
    }
    if outcome.result is not None:
        written = outcome.result.written
        seconds = outcome.write_seconds
        metadata["write_seconds"] = dg.MetadataValue.float(round(seconds, 3))
        metadata["write_rows_per_second"] = dg.MetadataValue.float(
            round(written / seconds if seconds else 0, 1)
        )
    return metadata


def shard_metadata(outcome: UserKindsOutcome) -> dict[str, dict[str, Any]]:
    """Per shard: users processed, not found, ambiguous, and the kind distribution."""
    per_shard: dict[str, Counter[str]] = defaultdict(Counter)
    for record in outcome.plan.records:
        counts = per_shard[shard_of(record.key)]
        counts["processed"] += 1
        if record.category in (NOT_FOUND, AMBIGUOUS):
            counts[record.category] += 1
        kind = record.desired.get("kind") if record.desired else None
        if kind in KIND_METADATA_NAMES:
            counts[KIND_METADATA_NAMES[kind]] += 1
    names = ("processed", NOT_FOUND, AMBIGUOUS, *KIND_METADATA_NAMES.values())
    return {
        shard: {name: dg.MetadataValue.int(counts[name]) for name in names}
        for shard, counts in per_shard.items()
    }


def with_shard_counts(events: Iterator[SyncEvent], outcome: UserKindsOutcome) -> Iterator[SyncEvent]:
    """``report_applied``'s events, each shard's materialization with its own processed / kind counts added."""
    per_shard = shard_metadata(outcome)
    empty = {name: dg.MetadataValue.int(0) for name in next(iter(per_shard.values()), {})}
    for event in events:
        if isinstance(event, dg.AssetMaterialization) and event.partition:
            extra = per_shard.get(event.partition, empty)
            event = dg.AssetMaterialization(
                asset_key=event.asset_key,
                partition=event.partition,
                metadata={**event.metadata, **extra},
            )
        yield event


@sync_asset(
    name=TARGET,
    group="user_kinds",
    pool="portaildf_api",
    fresh_within=timedelta(days=1),
    kinds={"rest", "postgres"},
    description="users.kind in the Zéro Logement Vacant database, from the Portail DF exterieur / gestionnaire "
    "flags of each user's account.",
)
def user_kinds(
    context: dg.AssetExecutionContext,
    config: SyncRunConfig,
    portaildf: PortailDfResource,
    zlv_database: ZlvDatabase,
    sync_state: SyncStateResource,
):
    shards = selected_shards(context)
    outcome = asyncio.run(
        sync_user_kinds(
            context.log,
            context.run_id,
            config,
            portaildf,
            zlv_database,
            sync_state.store(),
            shards,
        )
    )
    extra = run_metadata(outcome)
    if outcome.result is None:
        yield from report_dry_run(context, outcome.plan, extra)
        return
    yield from with_shard_counts(
        report_applied(
            context,
            outcome.plan,
            outcome.result,
            shards,
            shard_of,
            extra,
            count_names=("updated", "unchanged", "failed"),
        ),
        outcome,
    )
