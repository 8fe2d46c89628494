"""What a domain hands the engine: a small source of desired and current state, and a batch writer.

The engine (``sync.run``) owns a run's sequence; a source only knows its systems. It says what the target
should hold (``read_desired``), what the target holds for the records the engine asks about
(``read_current``), and how to write one batch (``write``). Optional hooks bracket a real run (never a dry
run): ``started``, ``applied`` and ``stopped``, which is where Bakaláři's ``SystemLog`` rows are written.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sync_pipelines.sync.config import SyncRunConfig
from sync_pipelines.sync.plan import Conflict, FieldChange, PlannedRecord, Skip, Value, values_equal
from sync_pipelines.sync.shards import SHARD_COUNT, shard_of

READ_FAILED = "read_failed"


@dataclass(frozen=True)
class RunScope:
    """One run as the source sees it: its id, its shards, its config and where it logs."""

    run_id: str
    shards: frozenset[str]
    config: SyncRunConfig
    log: Any

    @property
    def dry_run(self) -> bool:
        return self.config.dry_run

    @property
    def complete(self) -> bool:
        """Whether the run covers every record: all shards and no ``limit``."""
        return len(self.shards) == SHARD_COUNT and self.config.limit is None


@dataclass
class Desired:
    """What the target should hold: ``records`` by key; ``skips`` left alone, and why; ``failing``: the
    skipped records that must fail the run (after everything else is written), with their reason."""

    records: dict[str, dict[str, Value]]
    skips: list[Skip] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)


@dataclass
class Current:
    """What the target holds for the records read: ``values[key]`` is ``None`` when the target has no such
    record. A record that could not be read is in ``failures`` and in neither mapping's keys otherwise."""

    values: dict[str, dict[str, Value] | None]
    failures: dict[str, str] = field(default_factory=dict)


class SyncSource:
    """Base of every domain's source; override what differs. One instance serves one run."""

    target: str = ""
    default_batch_size: int = 500
    # Whether the engine keeps what it wrote, so a later run need not read unchanged records again.
    remembers_written: bool = False
    # The per-shard counts each shard's materialization carries.
    count_names: tuple[str, ...] = ("created", "updated", "unchanged", "failed")

    # What the source's HTTP client did, recorded by ``record_api`` when the client closes.
    requests: int = 0
    retries: int = 0
    resends: int = (
        0  # writes sent again after reading that the target did not hold them (a lost answer, a 5xx)
    )
    in_flight: dict[str, Any] | None = None

    def record_api(self, api: Any) -> None:
        """Keep an ``ApiClient``'s request count, retries and how its requests in flight adapted."""
        self.requests, self.retries, self.resends = api.requests_made, api.retries, api.resends
        self.in_flight = api.concurrency_summary()

    def api_metadata(self) -> dict[str, Any]:
        """``record_api``'s figures as run metadata (the limit of requests in flight and what moved it)."""
        metadata: dict[str, Any] = {
            "requests_made": dg.MetadataValue.int(self.requests),
            "retries": dg.MetadataValue.int(self.retries),
            "writes_resent": dg.MetadataValue.int(self.resends),
        }
        if self.in_flight is not None:
            metadata["requests_in_flight"] = dg.MetadataValue.json(self.in_flight)
        return metadata

    def shard_of(self, key: str) -> str:
        return shard_of(key)

    def label(self, key: str) -> str:
        """A record as a person knows it, for plan and failure tables (default: its key)."""
        return key

    @contextlib.asynccontextmanager
    async def session(self, scope: RunScope) -> AsyncIterator[None]:
        """Open what the run needs (API clients) around the whole run."""
        yield

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

    async def applied(self, scope: RunScope, outcome: Any) -> None:
        """The plan was applied (never called in a dry run); ``outcome`` is the run's ``SyncOutcome``."""

    async def stopped(self, scope: RunScope, error: BaseException) -> None:
        """A real run failed with ``error`` (never called in a dry run)."""

    def metadata(self, outcome: Any) -> dict[str, Any]:
        """Whole-run figures of this domain, added to the run's summary."""
        return {}

    def shard_metadata(self, outcome: Any, shards: frozenset[str]) -> dict[str, dict[str, Any]]:
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
