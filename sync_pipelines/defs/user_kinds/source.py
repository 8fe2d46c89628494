"""The user kinds sync as a source for the engine: Portail DF's answer desired, ZLV's ``users.kind`` current.

One read gives the users in scope and their current kind (one query); each is looked up in Portail DF
concurrently; only users whose kind changes are written, in set-based batches. ``full_refresh`` has nothing to
ignore here: ``users.kind`` is read fresh from ZLV on every run and every user in scope is compared, so the flag
is accepted and changes nothing (it does not force rewrites of unchanged rows, which would only churn the table).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import dagster as dg

from sync_pipelines.defs.shared.api_source import ApiSource
from sync_pipelines.defs.user_kinds.database import ZlvUser, ZlvUsers
from sync_pipelines.defs.user_kinds.lookups import LookupResults, look_up_users
from sync_pipelines.defs.user_kinds.mapping import (
    INVALID_ANSWER,
    KIND_METADATA_NAMES,
    NO_EMAIL,
    NOT_FOUND,
    STRUCTURES_DISAGREE,
)
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, ZlvDatabase
from sync_pipelines.sync.config import RunScope, SyncRunConfig
from sync_pipelines.sync.outcome import Current, Desired, SyncOutcome
from sync_pipelines.sync.plan import PlannedRecord, Skip, Value
from sync_pipelines.sync.shards import shard_of

TARGET = "user_kinds"
DEFAULT_BATCH_SIZE = 1000
LOOKUP_FAILED = "lookup_failed"


def kind_value(value: Value) -> str | None:
    """A planned ``kind`` as ZLV's ``users.kind`` holds it: a text, or none (a user Portail DF gives no kind)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"a planned kind is text or none, not {type(value).__name__}")


def writer_for(zlv: ZlvUsers):
    """One set-based UPDATE per batch, in the batch's own transaction (the engine hands out the batches)."""

    def write(batch: list[PlannedRecord]) -> dict[str, str]:
        return zlv.write_kinds([(record.key, kind_value(record.desired["kind"])) for record in batch])

    return write


def users_in_scope(
    users: list[ZlvUser], shards: set[str] | frozenset[str], config: SyncRunConfig
) -> list[ZlvUser]:
    """The run's users: those of its shards, ordered by id, cut to ``limit``."""
    return config.take([user for user in users if shard_of(user.id) in shards])


def desired_kinds(
    users: list[ZlvUser], lookups: LookupResults, no_email: list[ZlvUser], clear_not_found: bool = False
) -> tuple[Desired, dict[str, dict[str, Value]]]:
    """Each user's kind from Portail DF's answer, and their current kind; answers that cannot be used
    (``invalid_answer``) and failed lookups are skipped, reported by user id as failing records (retried by the
    next run), never guessed. A user not found keeps their kind (the seed's rule), or, with
    ``clear_not_found``, gets NULL as ZLV's own login hook gives them."""
    desired: dict[str, dict[str, Value]] = {}
    current: dict[str, dict[str, Value]] = {}
    skips = [Skip(user.id, NO_EMAIL, "the ZLV email is blank") for user in no_email]
    for user in users:
        if user.id in lookups.failures:
            skips.append(Skip(user.id, LOOKUP_FAILED, lookups.failures[user.id]))
            continue
        outcome = lookups.outcomes[user.id]
        if outcome.category == NOT_FOUND and clear_not_found:
            desired[user.id] = {"kind": None}
            current[user.id] = {"kind": user.kind}
            continue
        if outcome.kind is None:
            skips.append(Skip(user.id, outcome.category or "skipped", outcome.reason))
            continue
        desired[user.id] = {"kind": outcome.kind}
        current[user.id] = {"kind": user.kind}
    failing = {skip.key: skip.reason for skip in skips if skip.category in (INVALID_ANSWER, LOOKUP_FAILED)}
    return Desired(desired, skips, failing), current


class UserKindsSource(ApiSource):
    target = TARGET
    source_name = "Portail DF"
    default_batch_size = DEFAULT_BATCH_SIZE
    remembers_written = False
    count_names = ("updated", "unchanged", "failed")

    def __init__(self, portaildf: PortailDfResource, zlv_database: ZlvDatabase) -> None:
        self.portaildf = portaildf
        self.zlv_database = zlv_database
        self.zlv: ZlvUsers | None = None
        self.lookups = LookupResults()
        self.current: dict[str, dict[str, Value]] = {}
        self.users_in_scope = 0
        self.zlv_read_seconds = 0.0
        self.logins = self.refreshes = 0

    async def read_desired(self, scope: RunScope) -> Desired:
        log = scope.log
        if scope.config.full_refresh:
            log.info("full_refresh: users.kind is read fresh on every run, so there is nothing to ignore")
        self.zlv = zlv = self.zlv_database.users()
        started = time.monotonic()
        everyone = zlv.read_users(self.zlv_database.includes_deleted())
        scope_users = users_in_scope(everyone, scope.shards, scope.config)
        self.zlv_read_seconds = time.monotonic() - started
        self.users_in_scope = len(scope_users)
        with_email = [user for user in scope_users if user.email.strip()]
        no_email = [user for user in scope_users if not user.email.strip()]
        log.info(f"{len(scope_users)} ZLV user(s) in scope, {len(with_email)} to look up in Portail DF")
        async with self.portaildf.client(log) as client:
            try:
                self.lookups = await look_up_users(client, with_email, log)
            finally:
                api = client.api
                self.record_api(api)
                self.logins, self.refreshes = client.logins, client.refreshes
        lookups = self.lookups
        log.info(
            f"lookups done: {len(lookups.outcomes)} answered, {len(lookups.failures)} failed, "
            f"in {lookups.seconds:.1f} s ({lookups.rate:.0f}/s)"
        )
        desired, self.current = desired_kinds(
            with_email, lookups, no_email, self.zlv_database.clears_not_found()
        )
        return desired

    async def read_current(self, keys: list[str]) -> Current:
        values: dict[str, dict[str, Value] | None] = {
            key: self.current[key] for key in keys if key in self.current
        }
        others = [key for key in keys if key not in self.current]
        if others:
            assert self.zlv is not None
            held = self.zlv.read_kinds(others)
            values.update({key: {"kind": held[key]} if key in held else None for key in others})
        return Current(values)

    def write(self, batch: list[PlannedRecord]) -> dict[str, str]:
        assert self.zlv is not None
        return writer_for(self.zlv)(batch)

    # -- reviewed plans and undo: ZLV alone, no Portail DF lookup ------------------------------------------
    async def read_target(self, keys: list[str]) -> Current:
        self.zlv = self.zlv or self.zlv_database.users()
        held = self.zlv.read_kinds(keys)
        return Current({key: {"kind": held[key]} if key in held else None for key in keys})

    def write_if_unchanged(self, batch: list[PlannedRecord]) -> dict[str, str]:
        assert self.zlv is not None
        return self.zlv.write_kinds_if(
            [(r.key, kind_value(r.changes[0].old), kind_value(r.changes[0].new)) for r in batch if r.changes]
        )

    def kind_distribution(self) -> Counter[str]:
        """Kinds Portail DF gave for the users processed (the seed's "Kind distribution")."""
        return Counter(o.kind for o in self.lookups.outcomes.values() if o.kind is not None)

    def metadata(self, outcome: SyncOutcome) -> dict[str, Any]:
        """Numeric run totals (plotted over time) and the phase timings."""
        plan = outcome.plan
        skips = plan.skip_counts()
        kinds = self.kind_distribution()
        lookups = self.lookups
        metadata: dict[str, Any] = {
            "processed": dg.MetadataValue.int(len(plan.records)),
            "not_found": dg.MetadataValue.int(
                sum(1 for o in lookups.outcomes.values() if o.category == NOT_FOUND)
            ),
            "structures_disagree": dg.MetadataValue.int(skips.get(STRUCTURES_DISAGREE, 0)),
            "several_structures": dg.MetadataValue.int(
                sum(1 for o in lookups.outcomes.values() if o.kind is not None and o.records > 1)
            ),
            "invalid_answer": dg.MetadataValue.int(skips.get(INVALID_ANSWER, 0)),
            "lookup_failed": dg.MetadataValue.int(skips.get(LOOKUP_FAILED, 0)),
            "no_email": dg.MetadataValue.int(skips.get(NO_EMAIL, 0)),
            **{name: dg.MetadataValue.int(kinds.get(kind, 0)) for kind, name in KIND_METADATA_NAMES.items()},
            "lookup_seconds": dg.MetadataValue.float(round(lookups.seconds, 3)),
            "lookups_per_second": dg.MetadataValue.float(round(lookups.rate, 1)),
            "read_seconds": dg.MetadataValue.float(round(self.zlv_read_seconds, 3)),
            **self.api_metadata(),
            "logins": dg.MetadataValue.int(self.logins),
            "token_refreshes": dg.MetadataValue.int(self.refreshes),
        }
        if outcome.result is not None:
            written = outcome.result.written
            seconds = outcome.result.seconds
            metadata["write_seconds"] = dg.MetadataValue.float(round(seconds, 3))
            metadata["write_rows_per_second"] = dg.MetadataValue.float(
                round(written / seconds if seconds else 0, 1)
            )
        return metadata

    def shard_metadata(self, outcome: SyncOutcome, shards: frozenset[str]) -> dict[str, dict[str, Any]]:
        """Per shard: users processed, not found, with disagreeing structures, and the kind distribution."""
        per_shard: dict[str, Counter[str]] = defaultdict(Counter)
        for record in outcome.plan.records:
            counts = per_shard[shard_of(record.key)]
            counts["processed"] += 1
            looked_up = self.lookups.outcomes.get(record.key)
            if looked_up is not None and looked_up.category in (NOT_FOUND, STRUCTURES_DISAGREE):
                counts[looked_up.category] += 1
            kind = record.desired.get("kind") if record.desired else None
            if kind in KIND_METADATA_NAMES:
                counts[KIND_METADATA_NAMES[kind]] += 1
        names = ("processed", NOT_FOUND, STRUCTURES_DISAGREE, *KIND_METADATA_NAMES.values())
        return {
            shard: {name: dg.MetadataValue.int(per_shard[shard][name]) for name in names} for shard in shards
        }
