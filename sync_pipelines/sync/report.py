"""How every sync shows a plan and its outcome to a person: markdown tables and log lines, one path for all three.

The orchestrator's side (``defs.shared.run_report``) puts these tables into a run's metadata and events.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.disclosure import PERSONAL_CHANGE, PLAIN, Disclosure
from sync_pipelines.sync.plan import Action, SyncPlan, Value, written_changes
from sync_pipelines.sync.state import Settlement

PREVIEW_ROWS = 50


@dataclass(frozen=True)
class Count:
    """A whole number among a run's figures."""

    value: int


@dataclass(frozen=True)
class Text:
    """An id or a short text among a run's figures."""

    value: str


@dataclass(frozen=True)
class Markdown:
    """A table among a run's figures, shown rendered."""

    value: str


# A run's figure as the engine states it; the orchestrator's side turns each into its own kind of metadata value.
Figure = Count | Text | Markdown


def cell(value: Value, width: int | None = 80) -> str:
    """A value as one cell of a markdown table: on one line, ``|`` escaped, at most ``width`` characters (a
    target's value may be long). A reason is given ``width=None``: the project's own sentence, whole, since a
    reason cut mid-sentence cannot be acted on."""
    text = (
        "∅" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def records_table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], label: Callable[[str], str]
) -> str:
    """Markdown: the record (as ``label`` names it), then the other cells of each row; the first rows only."""
    lines = [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}"]
    lines += [
        f"| {' | '.join([cell(label(key)), *(cell(text, None) for text in cells)])} |"
        for key, *cells in rows[:PREVIEW_ROWS]
    ]
    if len(rows) > PREVIEW_ROWS:
        lines.append(f"| ... |{' |' * (len(header) - 2)} {len(rows) - PREVIEW_ROWS} more |")
    return "\n".join(lines)


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
            what = PERSONAL_CHANGE if values is None else f"{cell(values[0])} -> {cell(values[1])}"
            lines.append(
                f"| {cell(label(record.key))} | {record.action.value} | {cell(change.field)} | {what} |"
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
        lines += [f"| {cell(label(r.key))} | {r.category} | {cell(r.reason, None)} |" for r in skipped[:rows]]
        if len(skipped) > rows:
            lines.append(f"| ... | | {len(skipped) - rows} more |")
    if settlement:
        changes = settlement.changes
        lines += ["", "| left in flight by an interrupted run | field | new value | settled as |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [
            f"| {cell(label(c.key))} | {cell(c.field)} | {cell(disclosure.value(c.key, c.field, c.new))} | "
            f"{c.status} |"
            for c in changes[:rows]
        ]
        if len(changes) > rows:
            lines.append(f"| ... | | | {len(changes) - rows} more |")
        if settlement.unread:
            lines.append(f"| ({settlement.unread} change(s) of records not read stay in flight) | | | |")
    return "\n".join(lines)


def log_plan(
    log: logging.Logger, plan: SyncPlan, dry_run: bool, settlement: Settlement | None = None
) -> None:
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


def changed_shards(plan: SyncPlan, result: ApplyResult, shard_of: Callable[[str], str]) -> set[str]:
    """The shards holding a record the run wrote at least one field of: those an undo materializes."""
    answers = {**result.failures, **result.conflicts}
    return {
        shard_of(record.key) for record in plan.to_write if written_changes(record, answers.get(record.key))
    }
