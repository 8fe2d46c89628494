"""How every sync asset reports: a dry run as an observation, an applied plan as one materialization per shard.

A shard whose records all went through is materialized, with its own counts; a shard holding a failed record
is not, so the partition view shows exactly which shards need a re-run. After the healthy shards are recorded
the step fails, listing the failed records, so the failure alert fires; the next run retries them.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from sync_pipelines.core.errors import FailedRecordsError
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import Action, SyncPlan
from sync_pipelines.sync.report import changes_table, plan_metadata, result_metadata

SyncEvent = dg.AssetMaterialization | dg.AssetObservation


def log_plan(context: dg.AssetExecutionContext, plan: SyncPlan, dry_run: bool) -> None:
    counts = plan.counts()
    skipped = ", ".join(f"{name} {count}" for name, count in sorted(plan.skip_counts().items())) or "none"
    context.log.info(
        f"{plan.target}{' (dry run)' if dry_run else ''}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['unchanged']} unchanged, {counts['skip']} skipped ({skipped})"
    )


def report_dry_run(
    context: dg.AssetExecutionContext, plan: SyncPlan, extra: Mapping[str, Any] | None = None
) -> Iterator[SyncEvent]:
    """The full plan, shown in the UI (observation metadata) and the log; nothing is materialized."""
    log_plan(context, plan, dry_run=True)
    context.log.info(f"plan of {plan.target} (dry run, nothing written):\n{changes_table(plan)}")
    yield dg.AssetObservation(
        asset_key=context.asset_key, metadata={**plan_metadata(plan, True), **(extra or {})}
    )


def shard_counts(
    plan: SyncPlan, result: ApplyResult, shard_of_key: Callable[[str], str]
) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in plan.records:
        shard = shard_of_key(record.key)
        if record.key in result.failures:
            counts[shard]["failed"] += 1
        elif record.action is Action.SKIP:
            counts[shard][f"skipped_{record.category or 'other'}"] += 1
        elif record.action is Action.UNCHANGED:
            counts[shard]["unchanged"] += 1
        else:
            counts[shard]["created" if record.action is Action.CREATE else "updated"] += 1
    return counts


def report_applied(
    context: dg.AssetExecutionContext,
    plan: SyncPlan,
    result: ApplyResult,
    shards: set[str],
    shard_of_key: Callable[[str], str],
    extra: Mapping[str, Any] | None = None,
    count_names: tuple[str, ...] = ("created", "updated", "unchanged", "failed"),
) -> Iterator[SyncEvent]:
    """Per-shard materializations for healthy shards, a run summary, then ``FailedRecordsError`` if any failed."""
    extra = dict(extra or {})
    per_shard = shard_counts(plan, result, shard_of_key)
    skip_names = sorted(
        {name for counts in per_shard.values() for name in counts if name.startswith("skipped_")}
    )
    numeric_extra = {
        k: v
        for k, v in extra.items()
        if isinstance(v, (int, float, dg.IntMetadataValue, dg.FloatMetadataValue))
    }
    healthy = []
    for shard in sorted(shards):
        counts = per_shard.get(shard, Counter())
        if counts["failed"]:
            continue
        healthy.append(shard)
        metadata: dict[str, Any] = {
            name: dg.MetadataValue.int(counts[name]) for name in (*count_names, *skip_names)
        }
        metadata.update({f"run_{key}": value for key, value in numeric_extra.items()})
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=shard, metadata=metadata)
    yield dg.AssetObservation(
        asset_key=context.asset_key, metadata={**result_metadata(plan, result), **extra}
    )
    context.log.info(
        f"{plan.target}: {result.created} created, {result.updated} updated, {result.failed} failed "
        f"in {result.seconds:.1f} s; {len(healthy)}/{len(shards)} shard(s) healthy"
    )
    if result.failures:
        raise FailedRecordsError(plan.target, result.failure_list())
