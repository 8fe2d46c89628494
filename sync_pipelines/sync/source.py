"""What a domain hands the engine: a small source of desired and current state, and a batch writer.

The engine (``sync.run``) owns a run's sequence; a source only knows its systems. It says what the target
should hold (``read_desired``), what the target holds for the records the engine asks about
(``read_current``), and how to write one batch (``write``). It carries its planning strategy too (``plan``:
a sync's by default, a replay's for a reviewed plan or an undo). Optional hooks bracket a real run (never a dry
run): ``started``, ``applied`` and ``stopped``, which is where Bakaláři's ``SystemLog`` rows are written.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping

from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.outcome import Current, Desired, PlannedRun, SyncOutcome
from sync_pipelines.sync.plan import Conflict, FieldChange, PlannedRecord, Value, values_equal
from sync_pipelines.sync.planning import plan_sync
from sync_pipelines.sync.shards import shard_of
from sync_pipelines.sync.state import SyncStateStore


class SyncSource:
    """Base of every domain's source; override what differs. One instance serves one run."""

    target: str = ""
    # The system whose answers give the desired state, as row errors name it ("unusable in Portail DF's answer").
    source_name: str = "the source"
    default_batch_size: int = 500
    # Whether the engine keeps what it wrote, so a later run need not read unchanged records again.
    remembers_written: bool = False
    # The per-shard counts each shard's materialization carries.
    count_names: tuple[str, ...] = ("created", "updated", "unchanged", "failed")

    def shard_of(self, key: str) -> str:
        return shard_of(key)

    def label(self, key: str) -> str:
        """A record as a person knows it, by its ids, for plan and failure tables (default: its key)."""
        return key

    # Per record kind (the key's part before ':', '*' for all), the fields whose values are personal data.
    personal_fields: Mapping[str, Collection[str]] = {}

    def disclosure(self) -> Disclosure:
        """How reports name this target's records and which values they keep out (see ``sync.disclosure``)."""
        return Disclosure(self.label, self.personal_fields)

    @contextlib.asynccontextmanager
    async def session(self, scope: RunScope) -> AsyncIterator[None]:
        """Open what the run needs (API clients) around the whole run."""
        yield

    async def plan(self, state: SyncStateStore, scope: RunScope) -> PlannedRun:
        """How a run of this source is planned (steps 1-3 of ``sync.run``): from what the source system says
        (``sync.planning``). A replay plans from saved changes instead (``sync.replay``)."""
        return await plan_sync(self, state, scope)

    async def read_desired(self, scope: RunScope) -> Desired:
        raise NotImplementedError

    async def read_current(self, keys: list[str]) -> Current:
        """The target's values for ``keys``: the records desired and not remembered, and those an interrupted
        run left in flight."""
        raise NotImplementedError

    def write(self, batch: list[PlannedRecord]) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        """Write one batch; answer ``{key: reason}`` for the records that failed."""
        raise NotImplementedError

    # -- reviewed plans and undo (``sync.replay``) ----------------------------------------------------------
    async def read_target(self, keys: list[str]) -> Current:
        """The target's values for ``keys`` without ``read_desired`` having run (a saved plan or an undo is
        applied without reading the source system). Default: ``read_current``."""
        return await self.read_current(keys)

    def write_if_unchanged(
        self, batch: list[PlannedRecord]
    ) -> Mapping[str, str] | Awaitable[Mapping[str, str]]:
        return self._read_then_write(batch)

    async def _read_then_write(self, batch: list[PlannedRecord]) -> Mapping[str, str]:
        """Write each planned field of ``batch`` only where the target still holds the change's ``old`` value; the
        fields that moved are left alone and answered with a ``Conflict`` naming them, the record's other planned
        fields are written. Default (an API without conditional writes): read the batch's records right before
        writing them. A database overrides this with ``UPDATE ... WHERE field = old`` in the batch's
        transaction."""
        held = await self.read_target([record.key for record in batch])
        failures: dict[str, str] = dict(held.failures)
        ready = []
        for record in batch:
            if record.key in failures:
                continue
            moved = moved_fields(record.changes, held.values.get(record.key))
            if moved:
                failures[record.key] = Conflict(", ".join(moved), moved)
            if len(moved) < len(record.changes):
                ready.append(record.leaving(moved))
        if ready:
            outcome = self.write(ready)
            failures.update(await outcome if isinstance(outcome, Awaitable) else outcome)
        return failures

    def undo_changes(self, key: str, changes: list[FieldChange]) -> tuple[list[FieldChange], str | None]:
        """Of a run's applied ``changes`` to ``key``, those an undo reverses, and why the others are kept (for a
        person to decide). Default: all of them."""
        return changes, None

    def settles(self, scope: RunScope) -> bool:
        """Whether this run may settle what interrupted runs left in flight (it reads every record it needs)."""
        return True

    async def started(self, scope: RunScope) -> None:
        """A real run begins (never called in a dry run)."""

    async def applied(self, scope: RunScope, outcome: SyncOutcome) -> None:
        """The plan was applied (never called in a dry run); ``outcome`` is the run's ``SyncOutcome``."""

    async def stopped(self, scope: RunScope, error: BaseException) -> None:
        """A real run failed with ``error`` (never called in a dry run)."""

    def metadata(self, outcome: SyncOutcome) -> Mapping[str, object]:
        """Whole-run figures of this domain, added to the run's summary: the engine's ``sync.report.Figure``s, or the
        orchestrator's own metadata values, which the engine passes through without reading them."""
        return {}

    def shard_metadata(
        self, outcome: SyncOutcome, shards: frozenset[str]
    ) -> Mapping[str, Mapping[str, object]]:
        """Figures of this domain per shard, added to each shard's materialization."""
        return {}


def _blank(value: Value) -> Value:
    return None if value in ("", []) else value


def moved_fields(changes: tuple[FieldChange, ...], held: Mapping[str, Value] | None) -> list[str]:
    """The fields of ``changes`` whose target value is no longer the change's ``old`` (a missing record holds
    nothing: ``None`` everywhere)."""
    held = held or {}
    return [
        change.field
        for change in changes
        if not values_equal(_blank(held.get(change.field)), _blank(change.old))
    ]
