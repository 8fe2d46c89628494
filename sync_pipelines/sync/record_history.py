"""Record history: "why does the target hold this value for this record?" answered in one place.

Two halves, both without an orchestrator:

* **What a run keeps** (``keep_outcomes``, called once per run by ``sync.run`` right after planning): the run's kind
  (a sync, a dry run, the apply of plan X, an undo of run Y) and, for each record it did not write, what it did:
  a dry run's planned changes, skips with their category and reason, row errors (a source answer that cannot be
  used, a record the target could not be read for). Writes are in the audit log already (applied, failed,
  conflict, settled). Kept by record id in the state database (``sync.outcome_store``), personal values left out.
* **The answer** (``ask``): every audit row and outcome of the record, oldest first, one line per run, field and
  outcome (repeated skips folded into one line); under it, per field, what the target holds now and what the
  source wants now, both read live by the domain's ``RecordLookup``, and why they differ; and the command that
  would undo the last change. Personal fields read ``changed (personal data, not shown)``, as in plans.

A domain's ``RecordLookup`` resolves what a person asks (an RT user id or a student id, a ZLV user id or an
e-mail, a Bakaláři id or an EduRPG user id) to the record keys the state database knows, and reads the record
on both sides now, with no side effect a run of the sync would not have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sync_pipelines.core.errors import SyncError
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.disclosure import PERSONAL_CHANGE, PERSONAL_VALUE, Disclosure
from sync_pipelines.sync.outcome import PlannedRun
from sync_pipelines.sync.outcome_store import AUDITED, HistoryRow, RecordOutcome, RunRecord
from sync_pipelines.sync.plan import CONFLICT, Action, Value, values_equal
from sync_pipelines.sync.report import cell
from sync_pipelines.sync.state import APPLIED, FAILED, NOT_APPLIED, SyncStateStore
from sync_pipelines.sync.state_schema import INTERRUPTED, PLANNED, ROW_ERROR, SKIPPED

# Rows of the history table a run page shows (the newest; the command line prints every row).
SHOWN_EVENTS = 200


# -- what a run keeps -------------------------------------------------------------------------------------------
def run_record(scope: RunScope, planned: PlannedRun, target: str) -> RunRecord:
    return RunRecord(scope.run_id, target, scope.dry_run, planned.plan_id, planned.undo_of)


def outcomes_of(planned: PlannedRun, dry_run: bool, disclosure: Disclosure) -> list[RecordOutcome]:
    """What a planned run keeps besides its writes: skips and row errors, and a dry run's planned changes (values
    of personal fields replaced by a marker). A real run's conflicts are audited field by field already."""
    failing = planned.failing
    outcomes: list[RecordOutcome] = []
    skipped: set[str] = set()
    for record in planned.outcome.plan.records:
        if record.action is Action.SKIP:
            if record.category == CONFLICT and not dry_run:
                continue
            skipped.add(record.key)
            outcome = ROW_ERROR if record.key in failing else SKIPPED
            reason = record.reason or failing.get(record.key)
            outcomes.append(RecordOutcome(record.key, outcome, record.category, reason=reason))
        elif dry_run and record.writes:
            outcomes += [
                RecordOutcome(
                    record.key,
                    PLANNED,
                    field=change.field,
                    old=disclosure.value(record.key, change.field, change.old),
                    new=disclosure.value(record.key, change.field, change.new),
                )
                for change in record.changes
            ]
    outcomes += [
        RecordOutcome(key, ROW_ERROR, reason=reason) for key, reason in failing.items() if key not in skipped
    ]
    return outcomes


def keep_outcomes(
    state: SyncStateStore, scope: RunScope, planned: PlannedRun, disclosure: Disclosure
) -> None:
    """Keep the run's kind and its per-record outcomes (one transaction): what record history needs besides the
    audit log. Called once, after planning and before anything is written."""
    target = planned.outcome.target
    state.history.record_run(
        run_record(scope, planned, target), outcomes_of(planned, scope.dry_run, disclosure)
    )


# -- what a domain reads now ------------------------------------------------------------------------------------
class RecordNotFound(SyncError):
    """A question that names no record the sync knows; the message names the setting to check and never repeats
    an e-mail it was asked about."""


@dataclass(frozen=True)
class RecordNow:
    """One record as its two systems hold it now. ``target``: its fields in the target (``None``: no such record,
    or, with ``target_unread``, not read); ``wanted``: the fields the source wants written (``None``: it wants
    nothing, and ``not_wanted`` says why: a skip's category and reason); ``row_error``: the source's answer for it
    cannot be used. ``note``: a line about a key that is not a record of the target (RT: a student id)."""

    target: Mapping[str, Value] | None = None
    target_unread: str | None = None
    wanted: Mapping[str, Value] | None = None
    not_wanted: str | None = None
    row_error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Subject:
    """What a question names: the record keys the state database knows it by (an RT user and its student: two),
    how each is named in reports (by ids), each one read now, and names for ids a value holds (a class's id ->
    its name), ``{field: {value: name}}``."""

    label: str
    keys: tuple[str, ...]
    now: Mapping[str, RecordNow] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    value_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def label_of(self, key: str) -> str:
        return self.labels.get(key, key)


class RecordLookup(Protocol):
    """A domain's side of record history."""

    target: str
    remembers_written: bool  # whether runs compare with what they last wrote (RT) rather than the target

    def disclosure(self) -> Disclosure: ...

    async def subject(self, question: str, state: SyncStateStore) -> Subject:
        """Resolve ``question`` to record keys and read each on both sides now; never echo an e-mail."""
        ...


# -- the answer -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryEvent:
    """One audit row or outcome of the record, with the run it belongs to."""

    at: datetime
    run_id: str
    kind: str
    key: str
    field: str | None
    old: Value
    new: Value
    status: str  # applied, failed, conflict, not_applied (audit) or planned, skipped, row_error (outcome)
    category: str | None
    reason: str | None

    @property
    def has_change(self) -> bool:
        return self.field is not None and self.status != SKIPPED and self.status != ROW_ERROR

    @property
    def outcome(self) -> str:
        """The outcome with its reason, as the table shows it."""
        reason = self.reason or ""
        category = f" ({self.category})" if self.category else ""
        if self.status == APPLIED:
            return "applied" + (f" ({INTERRUPTED})" if reason == INTERRUPTED else "")
        if self.status == NOT_APPLIED:
            return f"not applied ({reason or INTERRUPTED})"
        if self.status == FAILED or self.status == ROW_ERROR:
            return f"row error{category}: {reason}"
        if self.status == CONFLICT:
            return f"conflict: {reason}"
        if self.status == PLANNED:
            return "planned (nothing written)"
        if self.status == SKIPPED:
            return f"skipped{category}: {reason}"
        return f"{self.status}{category}: {reason}"

    def same_outcome(self, other: HistoryEvent) -> bool:
        """Whether ``other`` repeats this skip or row error (same record, category and reason)."""
        return self.status in (SKIPPED, ROW_ERROR) and (
            self.key,
            self.field,
            self.status,
            self.category,
            self.reason,
        ) == (other.key, other.field, other.status, other.category, other.reason)


@dataclass(frozen=True)
class FieldNow:
    key: str
    field: str | None  # None: a key with no fields to compare (a student id in RT's history)
    held: Value
    wanted: Value
    why: str
    holds: bool = True  # False: the target has no such record, or it was not read
    wants: bool = True  # False: the source wants nothing written (skipped, a row error)


@dataclass
class RecordHistory:
    target: str
    subject: Subject
    events: list[HistoryEvent]
    fields: list[FieldNow]
    disclosure: Disclosure
    last_change: HistoryEvent | None = None
    undo_command: str | None = None

    # -- rendering ---------------------------------------------------------------------------------------------
    def value(self, key: str, name: str | None, value: Value) -> str:
        shown = cell(self.disclosure.value(key, name or "", value))
        label = self.subject.value_names.get(name or "", {}).get(str(value)) if value is not None else None
        return f"{shown} ({cell(label)})" if label else shown

    def change(self, event: HistoryEvent) -> str:
        if not event.has_change:
            return ""
        if self.disclosure.change(event.key, event.field or "", event.old, event.new) is None or (
            PERSONAL_VALUE in (event.old, event.new)
        ):
            return PERSONAL_CHANGE
        return f"{self.value(event.key, event.field, event.old)} -> {self.value(event.key, event.field, event.new)}"

    def events_table(self, link: Callable[[str], str] = str, limit: int | None = None) -> str:
        """Markdown, oldest first: when, run (``link`` makes its cell: a link on a run page), kind, record,
        field, old -> new, outcome. Consecutive repeats of a skip or row error are one line over their runs."""
        folded = fold(self.events)
        lines = [
            "| when (UTC) | run | kind | record | field | old -> new | outcome |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        hidden = 0 if limit is None else max(0, len(folded) - limit)
        if hidden:
            lines.append(f"| ... | {hidden} earlier line(s) not shown | | | | | |")
        for first, last, count in folded[hidden:]:
            when = f"{first.at:%Y-%m-%d %H:%M:%S}"
            run = link(first.run_id)
            if count > 1:
                when += f" to {last.at:%Y-%m-%d %H:%M:%S}"
                run = f"{count} runs: {run} to {link(last.run_id)}"
            lines.append(
                f"| {when} | {run} | {cell(first.kind, None)} | {cell(self.subject.label_of(first.key))} | "
                f"{cell(first.field or '')} | {self.change(first)} | {cell(first.outcome, None)} |"
            )
        if not folded:
            lines.append("| (no run has planned, written or skipped this record) | | | | | | |")
        return "\n".join(lines)

    def now_table(self) -> str:
        """Markdown: per field, what the target holds and what the source wants now (read live), and why they
        differ."""
        lines = [
            f"| record | field | {self.target} holds now | the source wants now | why they differ |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in self.fields:
            held = self.value(row.key, row.field, row.held) if row.field and row.holds else "—"
            wanted = self.value(row.key, row.field, row.wanted) if row.field and row.wants else "—"
            lines.append(
                f"| {cell(self.subject.label_of(row.key))} | {cell(row.field or '—')} | {held} | {wanted} | "
                f"{cell(row.why, None)} |"
            )
        return "\n".join(lines)

    def undo_text(self) -> str:
        last = self.last_change
        if last is None or self.undo_command is None:
            return "Nothing to undo: no run applied a change to this record (that the audit log still keeps)."
        return (
            f"The last change was applied by run {last.run_id} ({last.kind}, {last.at:%Y-%m-%d %H:%M:%S} UTC). "
            "Its undo reverses every change that run applied, this record's among them, each only where the "
            'target still holds what the run wrote (to preview it first, leave out `"dry_run": false`):\n\n'
            f"    {self.undo_command}"
        )

    def markdown(self, link: Callable[[str], str] = str, limit: int | None = None) -> str:
        return "\n\n".join(
            [
                f"**{self.subject.label}** in `{self.target}`: what every run did, oldest first",
                self.events_table(link, limit),
                "**Now**, read live from both systems",
                self.now_table(),
                self.undo_text(),
            ]
        )


def fold(events: Sequence[HistoryEvent]) -> list[tuple[HistoryEvent, HistoryEvent, int]]:
    """``(first, last, runs)`` per line: consecutive repeats of one skip or row error become one line."""
    folded: list[tuple[HistoryEvent, HistoryEvent, int]] = []
    for event in events:
        if folded and folded[-1][0].same_outcome(event) and folded[-1][1].run_id != event.run_id:
            first, _, count = folded[-1]
            folded[-1] = (first, event, count + 1)
        else:
            folded.append((event, event, 1))
    return folded


def history_events(rows: Iterable[HistoryRow], runs: Mapping[str, RunRecord]) -> list[HistoryEvent]:
    """The rows as events, oldest first: by their run's start (when it was planned), then what the run decided
    at planning (outcomes) before what it wrote (audit rows), each in the order it was kept."""
    rows = list(rows)
    started: dict[str, datetime] = {}
    for row in rows:
        known = runs.get(row.run_id)
        moment = known.recorded_at if known is not None and known.recorded_at is not None else row.at
        started[row.run_id] = min(started.get(row.run_id, moment), moment)
    ordered = sorted(rows, key=lambda r: (started[r.run_id], r.run_id, r.kept == AUDITED, r.id))
    return [
        HistoryEvent(
            row.at,
            row.run_id,
            runs[row.run_id].kind if row.run_id in runs else "run (its kind was not kept)",
            row.key,
            row.field,
            row.old,
            row.new,
            row.status,
            row.category,
            row.reason,
        )
        for row in ordered
    ]


def _blank(value: Value) -> Value:
    return None if value in ("", []) else value


def same_value(held: Value, wanted: Value) -> bool:
    return values_equal(_blank(held), _blank(wanted))


def why_they_differ(
    now: RecordNow,
    field_name: str,
    latest: HistoryEvent | None,
    last_written: tuple[Value, str] | None,
    target: str,
    remembers_written: bool,
) -> str:
    """Why ``field_name`` of a record differs between the target and the source now: the source's answer now
    (a row error, a skip), then what the last run to touch it did (a conflict, a row error, a skip), then a change
    in the target since the project wrote it, else the next run's work."""
    if now.row_error:
        return f"row error: the source's answer cannot be used now: {now.row_error}; each run retries it"
    if now.target_unread:
        return f"{target} could not be read now: {now.target_unread}"
    if now.wanted is None:
        return f"skipped: {now.not_wanted or 'the source wants nothing for this record now'}"
    if field_name not in now.wanted:
        return "the source gives no value for this field now; the sync leaves it as it is"
    wanted = now.wanted[field_name]
    if latest is not None and latest.status == CONFLICT:
        return f"conflict in run {latest.run_id} ({latest.kind}): {latest.reason}; left as it was"
    if latest is not None and latest.status in (FAILED, ROW_ERROR):
        return f"row error in run {latest.run_id}: {latest.reason}; the next run retries it"
    if latest is not None and latest.status == SKIPPED:
        return f"skipped by run {latest.run_id}: {latest.category}: {latest.reason}"
    if last_written is not None and same_value(last_written[0], wanted):
        repair = (
            "runs compare with what they last wrote, so only a run with full_refresh: true writes it again"
            if remembers_written
            else "the next run writes it again"
        )
        return f"changed in {target} after run {last_written[1]} wrote it (a hand edit?); {repair}"
    if latest is not None and latest.status == APPLIED and same_value(latest.new, wanted):
        return (
            f"changed in {target} after run {latest.run_id} wrote it (a hand edit?); the next run "
            + ("with full_refresh: true " if remembers_written else "")
            + "writes it again"
        )
    if latest is not None and latest.status == PLANNED:
        return f"awaiting the next run: dry run {latest.run_id} planned it (apply_plan_id applies that plan)"
    if latest is None:
        return "awaiting the next run: no run has planned or written this field yet"
    return f"awaiting the next run: the source changed after run {latest.run_id}"


def fields_now(
    subject: Subject,
    events: Sequence[HistoryEvent],
    written: Mapping[tuple[str, str], tuple[Value, str]],
    target: str,
    remembers_written: bool,
) -> list[FieldNow]:
    """Per key and field: held, wanted and why (``in step`` when they agree)."""
    rows: list[FieldNow] = []
    for key in subject.keys:
        now = subject.now.get(key, RecordNow())
        mine = [event for event in events if event.key == key]
        names = list(now.wanted or {})
        names += [e.field for e in mine if e.field and e.field not in names]
        if not names and now.target:
            names = list(now.target)
        if not names:
            why = now.row_error or now.note or now.not_wanted or now.target_unread or "nothing to compare"
            rows.append(FieldNow(key, None, None, None, why))
            continue
        for name in dict.fromkeys(names):
            held = (now.target or {}).get(name)
            wanted = (now.wanted or {}).get(name)
            holds = now.target is not None and now.target_unread is None
            wants = now.wanted is not None and name in now.wanted and not now.row_error
            if holds and wants and same_value(held, wanted):
                rows.append(FieldNow(key, name, held, wanted, "in step"))
                continue
            latest = next((e for e in reversed(mine) if e.field in (name, None)), None)
            why = why_they_differ(now, name, latest, written.get((key, name)), target, remembers_written)
            rows.append(FieldNow(key, name, held, wanted, why, holds, wants))
    return rows


async def ask(
    lookup: RecordLookup,
    state: SyncStateStore,
    question: str,
    undo_command: Callable[[str], str] | None = None,
) -> RecordHistory:
    """The history of what ``question`` names (see the module's doc)."""
    subject = await lookup.subject(question, state)
    rows = state.history.rows(lookup.target, subject.keys)
    runs = state.history.runs({row.run_id for row in rows})
    events = history_events(rows, runs)
    written = state.last_written.runs(lookup.target, subject.keys) if lookup.remembers_written else {}
    last = next((e for e in reversed(events) if e.status == APPLIED), None)
    return RecordHistory(
        lookup.target,
        subject,
        events,
        fields_now(subject, events, written, lookup.target, lookup.remembers_written),
        lookup.disclosure(),
        last,
        undo_command(last.run_id) if last is not None and undo_command is not None else None,
    )
