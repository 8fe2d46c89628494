"""How every sync reports to Dagster: the plan and outcome as metadata and events, one path for all three.

Every change to a target is a materialization; anything that changed nothing is an observation. A dry run (and
an undo's preview) is one observation holding the whole plan: it never counts as the target's latest state. A
real run is one materialization per healthy shard (a sync: every shard of the run; an undo: the shards it
changed), then a summary observation for the run page; a shard holding a failed record is not materialized, so
the partition view shows exactly which shards need a re-run. The run's last materialization, the one the asset's
Overview shows, carries the run's totals first, under the plain names (``updated``, ``created``, ...), so a plot
of them has one point per run; each shard's own figures follow under ``<name>_in_shard``.

Records that failed are row errors (``sync.record_errors``): listed by id in the run's ``failures`` table and in
the sync asset's ``records_synced`` check (a warning), retried by the next run; the step fails, in one line and
after everything is recorded, only past ``SYNC_MAX_RECORD_ERRORS_PERCENT``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import dagster as dg

from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.disclosure import PLAIN, Disclosure
from sync_pipelines.sync.outcome import SyncOutcome
from sync_pipelines.sync.plan import SyncPlan
from sync_pipelines.sync.record_errors import RecordErrors
from sync_pipelines.sync.report import (
    Count,
    Markdown,
    Text,
    changes_table,
    records_table,
    shard_counts,
)
from sync_pipelines.sync.source import SyncSource
from sync_pipelines.sync.state import Settlement

SyncEvent = dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckResult

DRY_RUN_TAG = "sync/dry_run"
# The warning check every sync asset carries: the records its latest run could not sync, by id and why.
RECORDS_CHECK = "records_synced"
RECORDS_CHECK_DESCRIPTION = (
    "Every record of the asset's latest run went through: none unusable in the source's answer, none the target "
    "would not give or refused to write. A warning: such records are listed by id with their reason and retried "
    "by the next run; the run fails only past SYNC_MAX_RECORD_ERRORS_PERCENT."
)
# The run's totals, first among its metadata under these plain names (those it has, in this order).
RUN_TOTALS = (
    "created",
    "updated",
    "failed",
    "unchanged",
    "skipped",
    "conflicts",
    "fields_restored",
    "field_changes_written",
    "undo_of",
    "plan_id",
)
SHARD_SUFFIX = "_in_shard"


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


def errors_table(errors: RecordErrors, label: Callable[[str], str]) -> str:
    """Markdown: each row error's record (as a person knows it, by its ids), what went wrong and why."""
    return records_table(("record", "error", "reason"), errors.rows(), label)


def result_metadata(
    plan: SyncPlan,
    result: ApplyResult,
    settlement: Settlement | None = None,
    disclosure: Disclosure = PLAIN,
    errors: RecordErrors | None = None,
) -> dict[str, Any]:
    """The plan's metadata and what was written. Each record is counted once: a skipped record that is a row
    error (it could not be read, say) is counted as failed, not as skipped too."""
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
    if errors:
        metadata["failures"] = dg.MetadataValue.md(errors_table(errors, disclosure.label))
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


def totals_first(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` in the order a person reads it: the run's totals (``RUN_TOTALS``), the other figures, then the
    tables. The asset's Overview lists metadata in this order."""
    totals = {name: metadata[name] for name in RUN_TOTALS if name in metadata}
    tables = {
        name: value
        for name, value in metadata.items()
        if name not in totals and isinstance(value, dg.MarkdownMetadataValue)
    }
    rest = {name: value for name, value in metadata.items() if name not in totals and name not in tables}
    return {**totals, **rest, **tables}


def shard_figures(
    counts: Mapping[str, int], names: Collection[str], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """One shard's own figures, under ``<name>_in_shard``: after the run's totals, and never plotted with them."""
    figures: dict[str, Any] = {name: dg.MetadataValue.int(counts.get(name, 0)) for name in names}
    figures.update(extra)
    return {f"{name}{SHARD_SUFFIX}": value for name, value in figures.items()}


def records_check(
    asset_key: dg.AssetKey, errors: RecordErrors, label: Callable[[str], str]
) -> dg.AssetCheckResult:
    """The ``records_synced`` warning: passed when every record went through, else the row errors by id."""
    metadata: dict[str, Any] = {
        "record_errors": dg.MetadataValue.int(len(errors)),
        "records": dg.MetadataValue.int(errors.records),
    }
    if errors:
        metadata["errors"] = dg.MetadataValue.md(errors_table(errors, label))
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=RECORDS_CHECK,
        passed=not errors,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(errors)} record error(s): {errors.counts()}; the next run retries them"
            if errors
            else f"all {errors.records} record(s) went through"
        ),
        metadata=metadata,
    )


def report(
    asset_key: dg.AssetKey,
    scope: RunScope,
    source: SyncSource,
    outcome: SyncOutcome,
    shards: Collection[str],
    check: bool = False,
    description: str | None = None,
    changed_only: bool = False,
) -> Iterator[SyncEvent]:
    """The events of one run (see the module docstring): the healthy ones of ``shards`` materialized, each with
    ``description`` (``changed_only``: ``shards`` are those the run changed, an undo's); with ``check``, the
    ``records_synced`` check's result. Raises ``TooManyRecordErrors`` last, once everything is recorded, when
    the run's row errors are past the threshold."""
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
    errors = outcome.errors or RecordErrors(plan.target, source.source_name, len(plan.records))
    if result is None:
        table = changes_table(plan, settlement=outcome.settlement, disclosure=disclosure)
        log.info(f"plan of {plan.target} (dry run, nothing written):\n{table}")
        metadata = {**plan_metadata(plan, True, outcome.settlement, disclosure), **extra}
        if errors:
            metadata["record_errors"] = dg.MetadataValue.int(len(errors))
            metadata["failures"] = dg.MetadataValue.md(errors_table(errors, disclosure.label))
        yield dg.AssetObservation(
            asset_key=asset_key,
            metadata=metadata,
            tags={DRY_RUN_TAG: "true"},
            description=f"dry run of {plan.target}: the plan, nothing written",
        )
        return
    per_shard = shard_counts(plan, result, source.shard_of)
    shard_extra = source.shard_metadata(outcome, frozenset(shards))
    names = [
        *source.count_names,
        *sorted({name for counts in per_shard.values() for name in counts if name.startswith("skipped_")}),
    ]
    summary = totals_first({**result_metadata(plan, result, outcome.settlement, disclosure, errors), **extra})
    healthy = [shard for shard in sorted(shards) if not per_shard.get(shard, Counter())["failed"]]
    for shard in healthy:
        metadata = shard_figures(per_shard.get(shard, Counter()), names, shard_extra.get(shard, {}))
        if shard == healthy[-1]:
            # The asset's Overview shows its latest materialization: the run's last one carries what the run did
            # as a whole, first, then this shard's own figures.
            shown = (
                f"{len(healthy)} shard(s) it changed materialized"
                if changed_only
                else f"{len(healthy)} of {len(scope.shards)} shard(s) materialized"
            )
            metadata = {
                **{name: value for name, value in summary.items() if name in RUN_TOTALS},
                "shards": dg.MetadataValue.text(shown),
                **metadata,
                **{name: value for name, value in summary.items() if name not in RUN_TOTALS},
            }
        yield dg.AssetMaterialization(
            asset_key=asset_key, partition=shard, metadata=metadata, description=description
        )
    materialized = (
        f"; {len(healthy)} changed shard(s) materialized"
        if changed_only
        else f"; {len(healthy)}/{len(scope.shards)} shard(s) healthy"
    )
    closing = f", {errors.summary()}" if errors else ""
    # The run's summary line: logged, and the description of its summary observation (the run page shows it).
    line = (
        f"{plan.target}: {result.created} created, {result.updated} updated, {result.failed} failed "
        f"in {result.seconds:.1f} s{materialized}{closing}"
    )
    yield dg.AssetObservation(asset_key=asset_key, metadata=summary, description=line)
    if check:
        yield records_check(asset_key, errors, disclosure.label)
    log.info(line)
    errors.raise_if_too_many()
