"""What one run reads and what it ends with: the values the engine, the sources and the reports all pass around.

They sit in a module of their own so the run (``sync.run``), the replay strategy (``sync.replay``), the sources
(``sync.source``) and the reports can all name them without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sync_pipelines.sync.apply import ApplyResult
from sync_pipelines.sync.plan import PlannedRecord, Skip, SyncPlan, Value
from sync_pipelines.sync.record_errors import RecordErrors
from sync_pipelines.sync.state import Settlement


@dataclass
class Desired:
    """What the target should hold: ``records`` by key; ``skips`` left alone, and why; ``failing``: the
    skipped records whose source answer cannot be used, with their reason: row errors (``sync.record_errors``),
    reported and retried by the next run, where a plain skip (no RT user, not found) is not an error."""

    records: dict[str, dict[str, Value]]
    skips: list[Skip] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)


@dataclass
class Current:
    """What the target holds for the records read: ``values[key]`` is ``None`` when the target has no such
    record. A record that could not be read is in ``failures`` and in neither mapping's keys otherwise."""

    values: dict[str, dict[str, Value] | None]
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class SyncOutcome:
    """Everything a run found and did; ``result`` is ``None`` for a dry run. ``errors``: its row errors by
    origin (a dry run's: those found reading); ``result.failures`` holds them all, whatever their origin."""

    target: str
    plan: SyncPlan
    desired: Desired
    current: Current
    settlement: Settlement
    dry_run: bool
    result: ApplyResult | None = None
    plan_id: str | None = None  # the id a dry run saved its plan under (``apply_plan_id``)
    read_seconds: float = 0.0
    seconds: float = 0.0
    errors: RecordErrors | None = None
    # A replay's (``sync.replay``): its planned changes left alone as conflicts (the target moved since), one
    # record each; and the records an undo leaves to a person, with why.
    conflicts: list[PlannedRecord] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failures(self) -> dict[str, str]:
        return self.result.failures if self.result is not None else {}


def _nothing() -> None:
    pass


@dataclass
class PlannedRun:
    """What a planning strategy hands the run: the outcome so far (read and planned, nothing applied), and what
    the run does with it. A sync plans from what the source system says; a reviewed plan or an undo
    (``sync.replay``) from saved changes. Whichever planned it, one path saves a dry run's plan or applies it."""

    outcome: SyncOutcome
    # A dry run saves these records for review (``apply_plan_id``); ``None``: it saves nothing.
    to_save: list[PlannedRecord] | None = None
    undo_of: str | None = None  # the run an undo reverses, saved with its plan
    plan_id: str | None = None  # the saved plan a replay applies (record history names the run by it)
    # What a real run records before it applies the plan (settle what was left in flight, note conflicts).
    before_apply: Callable[[], None] = _nothing
    # Row errors found while planning, with their reason: records whose source answer cannot be used, and
    # records the target would not give.
    unusable: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def failing(self) -> dict[str, str]:
        """Every row error found while planning, whatever its origin."""
        return {**self.unusable, **self.unreadable}
