"""Apply a plan in batches: audit first, write, settle, pause; failures are collected, never fatal mid-run."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.core.errors import AuthenticationError
from sync_pipelines.sync.plan import PlannedRecord, SyncPlan
from sync_pipelines.sync.state import SyncStateStore

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
        except AuthenticationError:
            raise
        except Exception as error:
            failures[record.key] = f"rolled back: {short_error(error)}"
    return failures


def short_error(error: BaseException) -> str:
    """The error's kind and first line: a database error's full text repeats the statement and every parameter
    of the batch (other people's names and e-mails), which must not reach logs, alerts or the audit log."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


async def apply_plan(
    plan: SyncPlan,
    writer: BatchWriter,
    *,
    state: SyncStateStore,
    run_id: str,
    batch_size: int,
    batch_delay_seconds: float = 0.0,
    remember_written: bool = False,
    log: logging.Logger | Any | None = None,
) -> ApplyResult:
    """Write ``plan.to_write`` batch by batch.

    Each batch: its changes are logged ``pending`` in the audit log, the writer applies them (one transaction
    for a database target, concurrent requests for an API), then the outcome of every record is settled in the
    audit log and, with ``remember_written``, in the last-written state that later delta runs compare against.
    A record the writer reports as failed is kept out of the last-written state, so the next run retries it.
    """
    log = log or logging.getLogger("sync_pipelines.sync")
    records = plan.to_write
    result = ApplyResult(plan.target)
    started = time.monotonic()
    total_batches = (len(records) + batch_size - 1) // batch_size
    for index, start in enumerate(range(0, len(records), batch_size)):
        if index and batch_delay_seconds:
            await asyncio.sleep(batch_delay_seconds)
        batch = records[start : start + batch_size]
        batch_id = state.begin_batch(run_id, plan.target, batch)
        try:
            failures = await _write(writer, batch)
        except AuthenticationError:
            # Stop at once. Some writes of this batch may have landed: their audit rows stay pending and the
            # next run settles them against what the target holds.
            raise
        except Exception as error:
            # The batch was rolled back whole. One bad record must not fail its neighbours: write them one by
            # one, so only the records that fail on their own are reported.
            log.warning(
                f"{plan.target}: batch {index + 1}/{total_batches} rolled back ({short_error(error)}); "
                "writing its records one by one"
            )
            failures = await _write_one_by_one(writer, batch)
        state.finish_batch(run_id, plan.target, batch, failures, remember_written, batch_id)
        result.batches += 1
        result.failures.update(failures)
        for record in batch:
            if record.key in failures:
                continue
            result.written += 1
            result.field_changes += len(record.changes)
            if record.action.value == "create":
                result.created += 1
            else:
                result.updated += 1
        done = min(start + batch_size, len(records))
        elapsed = time.monotonic() - started
        log.info(
            f"{plan.target}: batch {index + 1}/{total_batches}: {done}/{len(records)} records "
            f"({done / elapsed if elapsed else 0:.0f}/s), {len(failures)} failed in this batch"
        )
    result.seconds = time.monotonic() - started
    return result
