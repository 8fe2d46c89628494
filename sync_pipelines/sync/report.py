"""How every sync reports: the plan and outcome as Dagster metadata and log lines, one path for all three.

A dry run is one observation holding the whole plan. A real run is one materialization per healthy shard
(each with its own counts), then a summary observation; a shard holding a failed record is not materialized,
so the partition view shows exactly which shards need a re-run. After the healthy shards are recorded the
step fails, listing the failed records, so the failure alert fires; the next run retries them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from sync_pipelines.core.errors import FailedRecordsError
from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.disclosure import PLAIN, Disclosure
from sync_pipelines.sync.plan import Action, SyncPlan, Value
from sync_pipelines.sync.state import Settlement

if TYPE_CHECKING:
    from sync_pipelines.sync.run import SyncOutcome
    from sync_pipelines.sync.source import RunScope, SyncSource

SyncEvent = dg.AssetMaterialization | dg.AssetObservation

PREVIEW_ROWS = 50
DRY_RUN_TAG = "sync/dry_run"


def _cell(value: Value) -> str:
    text = (
        "∅" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def changes_table(
    plan: SyncPlan,
    rows: int = PREVIEW_ROWS,
    settlement: Settlement | None = None,
    disclosure: Disclosure = PLAIN,
) -> str:
    """Markdown: one line per changed field of the first records that would be written, then the skips, then
    the changes an interrupted run left in flight and how they are (or would be) settled. ``disclosure`` names
    a record as a person knows it by its ids (RT: the student id beside the RT user id) and keeps personal
    values out (a changed name reads ``changed``)."""
    label = disclosure.label
    lines = ["| record | action | field | old -> new |", "| --- | --- | --- | --- |"]
    shown = 0
    for record in plan.to_write:
        for change in record.changes:
            if shown >= rows:
                break
            values = disclosure.change(record.key, change.field, change.old, change.new)
            what = (
                "changed (personal data, not shown)"
                if values is None
                else (f"{_cell(values[0])} -> {_cell(values[1])}")
            )
            lines.append(
                f"| {_cell(label(record.key))} | {record.action.value} | {_cell(change.field)} | {what} |"
            )
            shown += 1
    total = plan.field_changes()
    if total > shown:
        lines.append(f"| ... | | | {total - shown} more change(s) |")
    if total == 0:
        lines.append("| (nothing to write) | | | |")
    skipped = plan.skipped
    if skipped:
        lines += ["", "| skipped record | category | reason |", "| --- | --- | --- |"]
        lines += [f"| {_cell(label(r.key))} | {r.category} | {_cell(r.reason)} |" for r in skipped[:rows]]
        if len(skipped) > rows:
            lines.append(f"| ... | | {len(skipped) - rows} more |")
    if settlement:
        changes = settlement.changes
        lines += ["", "| left in flight by an interrupted run | field | new value | settled as |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [
            f"| {_cell(label(c.key))} | {_cell(c.field)} | {_cell(disclosure.value(c.key, c.field, c.new))} | "
            f"{c.status} |"
            for c in changes[:rows]
        ]
        if len(changes) > rows:
            lines.append(f"| ... | | | {len(changes) - rows} more |")
        if settlement.unread:
            lines.append(f"| ({settlement.unread} change(s) of records not read stay in flight) | | | |")
    return "\n".join(lines)


def log_plan(log: Any, plan: SyncPlan, dry_run: bool, settlement: Settlement | None = None) -> None:
    counts = plan.counts()
    skipped = ", ".join(f"{name} {count}" for name, count in sorted(plan.skip_counts().items())) or "none"
    log.info(
        f"{plan.target}{' (dry run)' if dry_run else ''}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['unchanged']} unchanged, {counts['skip']} skipped ({skipped})"
    )
    if settlement and dry_run:
        log.info(
            f"{plan.target} (dry run): the changes an interrupted run left in flight would be settled as "
            f"{settlement.counts()} (nothing is recorded in a dry run)"
        )


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
            f"| {_cell(disclosure.label(key))} | {_cell(reason)} |"
            for key, reason in result.failure_list()[:PREVIEW_ROWS]
        ]
        metadata["failures"] = dg.MetadataValue.md("\n".join(lines))
    return metadata


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
        **source.metadata(outcome),
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
    healthy = []
    for shard in sorted(scope.shards) if materialize else ():
        counts = per_shard.get(shard, Counter())
        if counts["failed"]:
            continue
        healthy.append(shard)
        metadata: dict[str, Any] = {
            name: dg.MetadataValue.int(counts[name]) for name in (*source.count_names, *skip_names)
        }
        metadata.update(shard_extra.get(shard, {}))
        yield dg.AssetMaterialization(asset_key=asset_key, partition=shard, metadata=metadata)
    yield dg.AssetObservation(
        asset_key=asset_key,
        metadata={**result_metadata(plan, result, outcome.settlement, disclosure), **extra},
    )
    log.info(
        f"{plan.target}: {result.created} created, {result.updated} updated, {result.failed} failed "
        f"in {result.seconds:.1f} s; {len(healthy)}/{len(scope.shards)} shard(s) healthy"
    )
    if result.failures:
        raise FailedRecordsError(plan.target, result.failure_list())
