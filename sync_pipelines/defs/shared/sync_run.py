"""The Dagster face of a run of the engine: an asset's body and an undo job's body, each one call.

Both tag the run (a dry run, the plan it saved or applies, the run an undo reverses), run ``sync.run.execute``
and yield the run's events (``defs.shared.run_report``). An applied undo changes the target as a sync does, so it
materializes the asset too (the shards it changed): the asset's Overview, freshness and lineage show what the
target holds after it, not the run it reversed.
"""

import asyncio
from collections.abc import Iterator

import dagster as dg

from sync_pipelines.defs.shared.partitions import selected_shards
from sync_pipelines.defs.shared.run_config import SyncAssetConfig, UndoConfig
from sync_pipelines.defs.shared.run_report import DRY_RUN_TAG, RECORDS_CHECK, SyncEvent, report
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.replay import ReplaySource, reviewed_source, undo_plan
from sync_pipelines.sync.report import changed_shards
from sync_pipelines.sync.run import execute
from sync_pipelines.sync.shards import SHARD_KEYS
from sync_pipelines.sync.source import SyncSource
from sync_pipelines.sync.state import SyncStateStore

PLAN_ID_TAG = "sync/plan_id"
UNDO_OF_TAG = "sync/undo_of"


def run_scope(context: dg.AssetExecutionContext, config: SyncAssetConfig) -> RunScope:
    return RunScope(context.run_id, frozenset(selected_shards(context)), config.run_config(), context.log)


def run_sync(
    context: dg.AssetExecutionContext, config: SyncAssetConfig, source: SyncSource, state: SyncStateStore
) -> Iterator[SyncEvent]:
    """Run the sync and yield its events: a dry run's plan as an observation; a real run's healthy shards as
    materializations, its summary as an observation and its ``records_synced`` check (when the run selected it),
    then ``TooManyRecordErrors`` if its row errors are past the threshold."""
    scope = run_scope(context, config)
    tags: dict[str, str] = {}
    if config.apply_plan_id:
        # Tagged first, so that filtering the runs by the plan also finds an apply that was refused.
        context.instance.add_run_tags(context.run_id, {PLAN_ID_TAG: config.apply_plan_id})
        # Exactly the reviewed plan: refused (before anything is read) if unknown, expired or another target's.
        source = reviewed_source(source, state, config.apply_plan_id)
        if source.undo_of:
            tags[UNDO_OF_TAG] = source.undo_of
    elif config.dry_run:
        tags[PLAN_ID_TAG] = context.run_id
    if config.dry_run:
        # Dry runs stand out in the Runs list; a run started with the tag already (the CLI, a schedule) keeps it.
        tags[DRY_RUN_TAG] = "true"
    if tags:
        context.instance.add_run_tags(context.run_id, tags)
    outcome = asyncio.run(execute(source, state, scope))
    check = dg.AssetCheckKey(context.asset_key, RECORDS_CHECK) in context.selected_asset_check_keys
    yield from report(context.asset_key, scope, source, outcome, scope.shards, check=check)


def run_undo(
    context: dg.OpExecutionContext,
    config: UndoConfig,
    source: SyncSource,
    state: SyncStateStore,
    asset_key: dg.AssetKey,
) -> Iterator[SyncEvent]:
    """An undo job's body: the reverse of ``config.run_id`` as a run of the engine, reported on the asset's page: a
    preview as an observation, an applied undo as materializations of the shards it changed."""
    # Tagged first, so that an undo that is refused is found by the run it was asked to reverse too.
    tags = {UNDO_OF_TAG: config.run_id}
    if config.dry_run:
        tags.update({DRY_RUN_TAG: "true", PLAN_ID_TAG: context.run_id})
    context.instance.add_run_tags(context.run_id, tags)
    records, kept = undo_plan(source, state, config.run_id)
    replay = ReplaySource(source, records, undo_of=config.run_id, kept=kept)
    scope = RunScope(context.run_id, frozenset(SHARD_KEYS), config.run_config(), context.log)
    outcome = asyncio.run(execute(replay, state, scope))
    if outcome.result is None:
        yield from report(asset_key, scope, replay, outcome, ())
        return
    restored = outcome.result.field_changes
    conflicts = len({key for key, _, _ in replay.conflict_rows(outcome)})
    yield from report(
        asset_key,
        scope,
        replay,
        outcome,
        changed_shards(outcome.plan, outcome.result, replay.shard_of),
        description=f"undo of run {config.run_id}: {restored} field(s) restored, {conflicts} conflict(s) left",
        changed_only=True,
    )
