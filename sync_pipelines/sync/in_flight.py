"""Settling what interrupted runs left in flight, before a reviewed plan or an undo is applied.

A sync settles the write-ahead rows killed runs left behind as part of its own reading (``sync.run``). A replay
reads only the records of its plan, so it settles first, on its own: otherwise an undo of a killed run would
read that run's applied changes from an audit log still missing the ones in flight, and succeed having left
them in the target. It runs under the target's lease (``sync.lease``), so every row in flight belongs to a run
that is gone. A dry run only works the settlement out (it writes nothing), unless another run holds the lease
now: its rows are its own.
"""

from __future__ import annotations

from typing import Protocol

from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.outcome import Current
from sync_pipelines.sync.plan import Value
from sync_pipelines.sync.state import Settlement, SyncStateStore


class TargetReads(Protocol):
    """What settling reads of a source (``SyncSource`` is one): its target's records, and whether the engine keeps
    what it wrote there."""

    @property
    def target(self) -> str: ...

    @property
    def remembers_written(self) -> bool: ...

    async def read_current(self, keys: list[str]) -> Current: ...


def in_flight_changes(state: SyncStateStore, target: str, scope: RunScope) -> dict[str, dict[str, Value]]:
    """The changes in flight a run settles (a dry run: would settle), ``{record_key: {field: new value}}``: every
    one, since a writing run holds the lease; none for a dry run while another run holds it (they are its own)."""
    pending = state.settlement.pending(target)
    if pending and scope.dry_run and (holder := state.leases.holder(target)) is not None:
        scope.log.info(f"{target}: the changes in flight belong to {holder.describe()}, which is writing now")
        return {}
    return pending


async def settle_in_flight(source: TargetReads, state: SyncStateStore, scope: RunScope) -> Settlement:
    """The settlement of the target's batches in flight, judged by what the target holds now (read with
    ``source.read_current``), and recorded unless the run is a dry run. Changes whose record could not be read
    stay in flight (``Settlement.unread``)."""
    target = source.target
    pending = in_flight_changes(state, target, scope)
    if not pending:
        return Settlement(target, [])
    current = await source.read_current(sorted(pending))
    settlement = state.settlement.judge(
        target, {key: current.values[key] for key in pending if key in current.values}
    )
    if settlement and not scope.dry_run:
        settled = state.settlement.settle(settlement, source.remembers_written)
        scope.log.warning(f"{target}: settled the changes an interrupted run left in flight: {settled}")
    return settlement
