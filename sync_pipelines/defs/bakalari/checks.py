"""Checks on EduRPG and on the sync's record: refs resolve, Bakaláři ids are unique, who must log in again.

None of them calls Bakaláři: testing a student's refresh token would rotate it, so the count of students who
must log in again comes from what the sync recorded per shard (``skipped_needs_login``).
"""

import dagster as dg
import sqlalchemy as sa

from sync_pipelines.defs.bakalari.edurpg import ENTITY_TABLES, REF_TYPES, external_ref, user
from sync_pipelines.defs.bakalari.resources import EduRpgDatabase
from sync_pipelines.defs.bakalari.source import TARGET
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.sync.shards import SHARD_KEYS

EXAMPLES = 20


@dg.asset_check(
    asset=TARGET,
    blocking=True,
    description='Every "ExternalRef" of type class, subject, user or enrollment points at an existing row of its '
    "table. A dangling ref means a row was deleted behind the sync's back; the next run re-creates it.",
)
@reported_as_failures
def edurpg_external_refs_resolve(edurpg_database: EduRpgDatabase) -> dg.AssetCheckResult:
    engine = edurpg_database.store().engine
    dangling: dict[str, int] = {}
    examples: list[dict[str, str]] = []
    checked = 0
    with engine.connect() as connection:
        for kind, ref_type in REF_TYPES.items():
            table = ENTITY_TABLES[kind]
            checked += connection.execute(
                sa.select(sa.func.count()).select_from(external_ref).where(external_ref.c.type == ref_type)
            ).scalar_one()
            query = (
                sa.select(external_ref.c.externalId, external_ref.c.internalId)
                .select_from(external_ref.outerjoin(table, table.c.id == external_ref.c.internalId))
                .where((external_ref.c.type == ref_type) & table.c.id.is_(None))
                .order_by(external_ref.c.externalId)
            )
            rows = connection.execute(query).all()
            dangling[ref_type] = len(rows)
            examples += [
                {"type": ref_type, "externalId": row.externalId, "internalId": row.internalId}
                for row in rows[: EXAMPLES - len(examples)]
            ]
    total = sum(dangling.values())
    return dg.AssetCheckResult(
        passed=total == 0,
        metadata={
            "refs_checked": dg.MetadataValue.int(checked),
            "dangling_refs": dg.MetadataValue.int(total),
            "dangling_by_type": dg.MetadataValue.json(dangling),
            "examples": dg.MetadataValue.json(examples),
        },
    )


@dg.asset_check(
    asset=TARGET,
    blocking=True,
    description='No two EduRPG users share a "bakalariId" (compared trimmed and case-insensitively): two rows '
    "for one Bakaláři account would split a student's game history.",
)
@reported_as_failures
def edurpg_unique_bakalari_ids(edurpg_database: EduRpgDatabase) -> dg.AssetCheckResult:
    engine = edurpg_database.store().engine
    normalized = sa.func.lower(sa.func.trim(user.c.bakalariId))
    query = (
        sa.select(normalized.label("bakalari_id"), sa.func.count().label("users"))
        .where(user.c.bakalariId.is_not(None))
        .group_by(normalized)
        .having(sa.func.count() > 1)
        .order_by(normalized)
    )
    with engine.connect() as connection:
        shared = {row.bakalari_id: int(row.users) for row in connection.execute(query)}
    return dg.AssetCheckResult(
        passed=not shared,
        metadata={
            "shared_bakalari_ids": dg.MetadataValue.int(len(shared)),
            "examples": dg.MetadataValue.json(dict(list(shared.items())[:EXAMPLES])),
        },
    )


@dg.asset_check(
    asset=TARGET,
    description="How many students' Bakaláři refresh tokens no longer work, as the latest sync of each shard "
    "found them (they are skipped until they log in to EduRPG again; nothing of theirs is deleted).",
)
@reported_as_failures
def bakalari_students_needing_login(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    asset_key = dg.AssetKey(TARGET)
    per_shard: dict[str, int] = {}
    for shard in SHARD_KEYS:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[shard]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        if materialization is None:
            continue
        value = materialization.metadata.get("skipped_needs_login")
        per_shard[shard] = int(value.value) if value is not None else 0
    total = sum(per_shard.values())
    examples: list[str] = []
    observations = context.instance.fetch_observations(asset_key, limit=1).records
    if observations and observations[0].asset_observation is not None:
        listed = observations[0].asset_observation.metadata.get("needs_login_students")
        examples = list(listed.value) if listed is not None else []
    return dg.AssetCheckResult(
        passed=total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{total} student(s) must log in to EduRPG again" if total else None,
        metadata={
            "students_needing_login": dg.MetadataValue.int(total),
            "shards_seen": dg.MetadataValue.int(len(per_shard)),
            "by_shard": dg.MetadataValue.json({k: v for k, v in per_shard.items() if v}),
            "latest_run_examples": dg.MetadataValue.json(examples[:EXAMPLES]),
        },
    )
