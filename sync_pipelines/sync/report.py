"""Plans and outcomes as Dagster metadata: numeric counts (plotted over time) and a readable table of changes."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import SyncPlan, Value

PREVIEW_ROWS = 50


def _cell(value: Value) -> str:
    text = (
        "∅" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def changes_table(plan: SyncPlan, rows: int = PREVIEW_ROWS) -> str:
    """Markdown: one line per changed field of the first records that would be written, then the skips."""
    lines = ["| record | action | field | old -> new |", "| --- | --- | --- | --- |"]
    shown = 0
    for record in plan.to_write:
        for change in record.changes:
            if shown >= rows:
                break
            lines.append(
                f"| {_cell(record.key)} | {record.action.value} | {_cell(change.field)} | "
                f"{_cell(change.old)} -> {_cell(change.new)} |"
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
        lines += [f"| {_cell(r.key)} | {r.category} | {_cell(r.reason)} |" for r in skipped[:rows]]
        if len(skipped) > rows:
            lines.append(f"| ... | | {len(skipped) - rows} more |")
    return "\n".join(lines)


def plan_metadata(plan: SyncPlan, dry_run: bool) -> dict[str, Any]:
    counts = plan.counts()
    metadata: dict[str, Any] = {
        "dry_run": dry_run,
        "planned_creates": dg.MetadataValue.int(counts["create"]),
        "planned_updates": dg.MetadataValue.int(counts["update"]),
        "unchanged": dg.MetadataValue.int(counts["unchanged"]),
        "skipped": dg.MetadataValue.int(counts["skip"]),
        "planned_field_changes": dg.MetadataValue.int(plan.field_changes()),
        "plan": dg.MetadataValue.md(changes_table(plan)),
    }
    for category, count in sorted(plan.skip_counts().items()):
        metadata[f"skipped_{category}"] = dg.MetadataValue.int(count)
    return metadata


def result_metadata(plan: SyncPlan, result: ApplyResult) -> dict[str, Any]:
    metadata = plan_metadata(plan, dry_run=False)
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
            f"| {_cell(key)} | {_cell(reason)} |" for key, reason in result.failure_list()[:PREVIEW_ROWS]
        ]
        metadata["failures"] = dg.MetadataValue.md("\n".join(lines))
    return metadata
