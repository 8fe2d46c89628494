"""Apply a plan in batches: write ahead, write, audit, pause; failures are collected, never fatal mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from sync_pipelines.core.database import timeout_error
from sync_pipelines.core.errors import StopsTheRun
from sync_pipelines.core.redaction import describe_error
from sync_pipelines.sync.plan import Action, Conflict, PlannedRecord, SyncPlan, written_changes
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines.sync.write_ahead import WriteAhead

P = ParamSpec("P")
R = TypeVar("R")
# A batch writer gets the records to write and answers ``{key: reason}`` for the ones that failed.
BatchWriter = Callable[[list[PlannedRecord]], "Mapping[str, str] | Awaitable[Mapping[str, str]]"]


@dataclass
class ApplyResult:
    target: str
    written: int = 0
    created: int = 0
    updated: int = 0
    field_changes: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    # Records a conditional writer left alone: the target no longer held the expected old value.
    conflicts: dict[str, Conflict] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def failure_list(self) -> list[tuple[str, str]]:
        return sorted(self.failures.items())


async def _write(writer: BatchWriter, records: list[PlannedRecord]) -> dict[str, str]:
    outcome = writer(records)
    return dict(await outcome if inspect.isawaitable(outcome) else outcome)


async def _write_one_by_one(writer: BatchWriter, records: list[PlannedRecord]) -> dict[str, str]:
    failures: dict[str, str] = {}
    for record in records:
        try:
            failures.update(await _write(writer, [record]))
        except StopsTheRun:
            raise
        except Exception as error:
            failures[record.key] = f"rolled back: {short_error(error)}"
    return failures


def short_error(error: BaseException) -> str:
    """The error's kind and first line, redacted (``describe_error``): a database error's full text repeats the
    statement and every parameter of the batch (other people's names and e-mails), which must not reach logs,
    alerts or the audit log."""
    return describe_error(error)


class _StateWriter:
    """Runs the state store's writes for ``apply_plan``, one at a time: on PostgreSQL in a worker thread, so
    one batch's outcome is recorded while the next batch goes to the target; elsewhere on the event loop."""

    def __init__(self, write_ahead: WriteAhead) -> None:
        self._executor = ThreadPoolExecutor(1, "sync-state") if write_ahead.allows_concurrent_writes else None

    async def call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._executor is None:
            return function(*args, **kwargs)
        return await self.start(function, *args, **kwargs)

    def start(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        """``function`` as a future. Where writes may overlap it is handed to a worker thread now (a task would
        only start once the caller yields, and a synchronous writer does not); else it runs when awaited."""
        if self._executor is None:
            return asyncio.ensure_future(self.call(function, *args, **kwargs))
        call = functools.partial(function, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


async def apply_plan(
    plan: SyncPlan,
    writer: BatchWriter,
    *,
    state: SyncStateStore,
    run_id: str,
    batch_size: int,
    batch_delay_seconds: float = 0.0,
    remember_written: bool = False,
    log: logging.Logger | None = None,
    before_batch: Callable[[], None] | None = None,
) -> ApplyResult:
    """Write ``plan.to_write`` batch by batch.

    Each batch's changes are written ahead to the state store before the writer applies them (one transaction
    for a database target, concurrent requests for an API). Then the outcome of every record goes into the
    audit log and, with ``remember_written``, into the last-written state that later delta runs compare
    against; a record the writer reports as failed is kept out of it, so the next run retries it.

    The state store's work runs beside the target's: while batch N is written, batch N-1's outcome is
    recorded and batch N+1 written ahead, in one transaction (on PostgreSQL in a worker thread). Outcomes
    are recorded in batch order, all of them before this returns or raises; a write-ahead row whose batch
    was never sent is removed, except by a killed process, whose next run settles it as ``not_applied``.

    ``before_batch`` is called before each batch is sent (the run checks it still holds its target's lease);
    an error it raises stops the run there, the batch unsent.
    """
    log = log or logging.getLogger("sync_pipelines.sync")
    records = plan.to_write
    result = ApplyResult(plan.target)
    started = time.monotonic()
    batches = [records[start : start + batch_size] for start in range(0, len(records), batch_size)]
    write_ahead = state.write_ahead
    writes = _StateWriter(write_ahead)
    ahead: dict[int, str] = {}  # batch index -> its write-ahead id, for batches not sent yet
    settling: asyncio.Future[str | None] | None = None  # the next batch's write-ahead id
    completed = False
    try:
        if batches:
            ahead[0] = await writes.call(write_ahead.begin, run_id, plan.target, batches[0])
        if len(batches) > 1:
            settling = writes.start(write_ahead.begin, run_id, plan.target, batches[1])
        for index, batch in enumerate(batches):
            if index and batch_delay_seconds:
                await asyncio.sleep(batch_delay_seconds)
            if before_batch is not None:
                before_batch()
            batch_id = ahead.pop(index)
            try:
                failures = await _write(writer, batch)
            except StopsTheRun:
                # Stop at once. Some writes of this batch may have landed: its write-ahead row stays, and the
                # next run settles it against what the target holds.
                raise
            except Exception as error:
                timeout = timeout_error(error, f"writing to {plan.target}")
                if timeout is not None:
                    raise timeout from None
                # The batch was rolled back whole. One bad record must not fail its neighbours: write them one
                # by one, so only the records that fail on their own are reported.
                log.warning(
                    f"{plan.target}: batch {index + 1}/{len(batches)} rolled back ({short_error(error)}); "
                    "writing its records one by one"
                )
                failures = await _write_one_by_one(writer, batch)
            if settling is not None:
                next_id = await settling  # the previous outcome recorded, the next batch written ahead
                settling = None
                if next_id is not None:
                    ahead[index + 1] = next_id
            after = batches[index + 2] if index + 2 < len(batches) else None
            settling = writes.start(
                write_ahead.finish,
                run_id,
                plan.target,
                batch,
                failures,
                remember_written,
                batch_id,
                after,
            )
            result.batches += 1
            for key, reason in failures.items():
                if isinstance(reason, Conflict):
                    result.conflicts[key] = reason
                else:
                    result.failures[key] = reason
            for record in batch:
                written = written_changes(record, failures.get(record.key))
                if not written:
                    continue
                result.written += 1
                result.field_changes += len(written)
                if record.action is Action.CREATE:
                    result.created += 1
                else:
                    result.updated += 1
            done = min((index + 1) * batch_size, len(records))
            elapsed = time.monotonic() - started
            log.info(
                f"{plan.target}: batch {index + 1}/{len(batches)}: {done}/{len(records)} records "
                f"({done / elapsed if elapsed else 0:.0f}/s), {len(failures)} failed in this batch"
            )
        if settling is not None:
            await settling
            settling = None
        completed = True
    finally:
        if not completed:
            await _wind_down(write_ahead, writes, settling, ahead, log)
        writes.close()
    result.seconds = time.monotonic() - started
    return result


async def _wind_down(
    write_ahead: WriteAhead,
    writes: _StateWriter,
    settling: asyncio.Future[str | None] | None,
    ahead: dict[int, str],
    log: logging.Logger,
) -> None:
    """Leaving on an error: the outcome being recorded is still recorded, and the write-ahead rows of batches
    never sent are removed (they would otherwise be settled as ``not_applied`` by the next run)."""
    unsent = list(ahead.values())
    if settling is not None:
        try:
            next_id = await settling
        except Exception as error:
            log.warning(f"recording a batch's outcome failed while stopping: {short_error(error)}")
        else:
            if next_id is not None:
                unsent.append(next_id)
    for batch_id in unsent:
        with contextlib.suppress(Exception):
            await writes.call(write_ahead.discard, batch_id)
