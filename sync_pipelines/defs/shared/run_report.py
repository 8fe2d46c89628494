"""How every sync reports to Dagster: the plan and outcome as metadata and events, one path for all three.

A dry run is one observation holding the whole plan. A real run is one materialization per healthy shard
(each with its own counts), then a summary observation; a shard holding a failed record is not materialized,
so the partition view shows exactly which shards need a re-run. After the healthy shards are recorded the
step fails, listing the failed records, so the failure alert fires; the next run retries them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from sync_pipelines.core.errors import FailedRecordsError
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.disclosure import PLAIN, Disclosure
from sync_pipelines.sync.outcome import SyncOutcome
from sync_pipelines.sync.plan import SyncPlan
from sync_pipelines.sync.report import PREVIEW_ROWS, Count, Markdown, Text, cell, changes_table, shard_counts
from sync_pipelines.sync.source import RunScope, SyncSource
from sync_pipelines.sync.state import Settlement

SyncEvent = dg.AssetMaterialization | dg.AssetObservation

DRY_RUN_TAG = "sync/dry_run"


def plan_metadata(
    plan: SyncPlan,
    dry_run: bool,
    settlement: Settlement | None = None,
    disclosure: Disclosure = PLAIN,
) -> dict[str, Any]:
    counts = plan.counts()
    metadata: dict[str, Any] = {
        "dry_run": dry_run,
        "planned_creates": dg.MetadataValue.int(counts["create"]),
        "planned_updates": dg.MetadataValue.int(counts["update"]),
        "unchanged": dg.MetadataValue.int(counts["unchanged"]),
        "skipped": dg.MetadataValue.int(counts["skip"]),
        "planned_field_changes": dg.MetadataValue.int(plan.field_changes()),
        "plan": dg.MetadataValue.md(changes_table(plan, settlement=settlement, disclosure=disclosure)),
    }
    for category, count in sorted(plan.skip_counts().items()):
        metadata[f"skipped_{category}"] = dg.MetadataValue.int(count)
    if settlement:
        prefix = "would_settle" if dry_run else "settled"
        for status, count in settlement.counts().items():
            metadata[f"{prefix}_{status}"] = dg.MetadataValue.int(count)
    return metadata


def result_metadata(
    plan: SyncPlan,
    result: ApplyResult,
    settlement: Settlement | None = None,
    disclosure: Disclosure = PLAIN,
) -> dict[str, Any]:
    """The plan's metadata and what was written. Each record is counted once: a skipped record that fails the
    run (it could not be read, say) is counted as failed, not as skipped too."""
    metadata = plan_metadata(plan, dry_run=False, settlement=settlement, disclosure=disclosure)
    skipped = Counter(
        record.category or "skipped" for record in plan.skipped if record.key not in result.failures
    )
    metadata["skipped"] = dg.MetadataValue.int(sum(skipped.values()))
    for category in plan.skip_counts():
        metadata[f"skipped_{category}"] = dg.MetadataValue.int(skipped.get(category, 0))
    metadata.update(
        {
            "created": dg.MetadataValue.int(result.created),
            "updated": dg.MetadataValue.int(result.updated),
            "failed": dg.MetadataValue.int(result.failed),
            "field_changes_written": dg.MetadataValue.int(result.field_changes),
            "apply_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        }
    )
    if result.failures:
        lines = ["| record | reason |", "| --- | --- |"]
        lines += [
            f"| {cell(disclosure.label(key))} | {cell(reason, None)} |"
            for key, reason in result.failure_list()[:PREVIEW_ROWS]
        ]
        metadata["failures"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


def dagster_metadata(figures: Mapping[str, Any]) -> dict[str, Any]:
    """A source's figures as Dagster metadata: the engine's ``Count``, ``Text`` and ``Markdown`` turned into
    Dagster's values, the rest (a domain's own ``MetadataValue``s) kept as they are."""
    kinds: dict[type, Callable[[Any], Any]] = {
        Count: dg.MetadataValue.int,
        Text: dg.MetadataValue.text,
        Markdown: dg.MetadataValue.md,
    }
    return {
        name: kinds[type(value)](value.value) if type(value) in kinds else value
        for name, value in figures.items()
    }


# The run's figures carried by its last materialization, under ``run_`` names beside the shard's own.
RUN_TOTALS = (
    "created",
    "updated",
    "failed",
    "unchanged",
    "skipped",
    "conflicts",
    "conflicts_at_write",
    "field_changes_written",
    "plan_id",
)
RUN_TABLES = ("plan", "conflict_records", "failures")


def run_totals(summary: dict[str, Any], healthy: list[str], shards: frozenset[str]) -> dict[str, Any]:
    """What a run did as a whole, for the asset's Overview (see ``report``)."""
    totals = {f"run_{name}": summary[name] for name in RUN_TOTALS if name in summary}
    totals["run_shards"] = dg.MetadataValue.text(f"{len(healthy)} of {len(shards)} shard(s) materialized")
    totals.update({f"run_{name}": summary[name] for name in RUN_TABLES if name in summary})
    return totals


def report(
    asset_key: dg.AssetKey,
    scope: RunScope,
    source: SyncSource,
    outcome: SyncOutcome,
    materialize: bool = True,
) -> Iterator[SyncEvent]:
    """The events of one run (see the module docstring), then ``FailedRecordsError`` if records failed. Without
    ``materialize`` (an undo job, which is not the asset's run), the summary observation alone."""
    plan, result, log = outcome.plan, outcome.result, scope.log
    extra = {
        "sync_seconds": dg.MetadataValue.float(round(outcome.seconds, 3)),
        "read_seconds": dg.MetadataValue.float(round(outcome.read_seconds, 3)),
        **dagster_metadata(source.metadata(outcome)),
    }
    if outcome.plan_id:
        extra["plan_id"] = dg.MetadataValue.text(outcome.plan_id)
        log.info(f"plan of {plan.target} saved for review as {outcome.plan_id} (run config apply_plan_id)")
    if result is not None and result.conflicts:
        extra["conflicts_at_write"] = dg.MetadataValue.int(len(result.conflicts))
    disclosure = source.disclosure()
    if result is None:
        table = changes_table(plan, settlement=outcome.settlement, disclosure=disclosure)
        log.info(f"plan of {plan.target} (dry run, nothing written):\n{table}")
        metadata = {**plan_metadata(plan, True, outcome.settlement, disclosure), **extra}
        yield dg.AssetObservation(asset_key=asset_key, metadata=metadata, tags={DRY_RUN_TAG: "true"})
        return
    per_shard = shard_counts(plan, result, source.shard_of)
    shard_extra = source.shard_metadata(outcome, scope.shards)
    skip_names = sorted(
        {name for counts in per_shard.values() for name in counts if name.startswith("skipped_")}
    )
    summary = {**result_metadata(plan, result, outcome.settlement, disclosure), **extra}
    healthy: list[str] = []
    for shard in sorted(scope.shards) if materialize else ():
        counts = per_shard.get(shard, Counter())
        if counts["failed"]:
            continue
        healthy.append(shard)
    for shard in healthy:
        counts = per_shard.get(shard, Counter())
        shard_metadata: dict[str, Any] = {
            name: dg.MetadataValue.int(counts[name]) for name in (*source.count_names, *skip_names)
        }
        shard_metadata.update(shard_extra.get(shard, {}))
        if shard == healthy[-1]:
            # The asset's Overview shows its latest materialization: the run's last one also carries what the
            # run did as a whole (totals, plan, conflicts), so the page does not show one shard's figures alone.
            shard_metadata.update(run_totals(summary, healthy, scope.shards))
        yield dg.AssetMaterialization(asset_key=asset_key, partition=shard, metadata=shard_metadata)
    yield dg.AssetObservation(asset_key=asset_key, metadata=summary)
    shards = f"; {len(healthy)}/{len(scope.shards)} shard(s) healthy" if materialize else ""
    log.info(
        f"{plan.target}: {result.created} created, {result.updated} updated, {result.failed} failed "
        f"in {result.seconds:.1f} s{shards}"
    )
    if result.failures:
        raise FailedRecordsError(plan.target, result.failure_list())
