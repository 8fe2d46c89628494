"""The RT sync as a source for the engine: students' grades and IDs desired, RT users' custom fields current.

Desired values come from the validated students table (pure, see ``desired``); current values are read from RT
one user at a time, only for users not remembered from earlier runs; a batch is written with one PUT per user.
Before anything is read, RT must have both configured user custom fields.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import dagster as dg
import pandas as pd

from sync_pipelines.core.errors import AuthenticationError, ConfigurationError
from sync_pipelines.core.http import ApiError
from sync_pipelines.defs.rt.client import RequestTrackerClient, RtRecordError
from sync_pipelines.defs.rt.desired import desired_custom_fields, record_shard
from sync_pipelines.defs.rt.resources import RequestTrackerResource
from sync_pipelines.sync.plan import PlannedRecord
from sync_pipelines.sync.source import Current, Desired, RunScope, SyncSource

TARGET = "rt_user_custom_fields"
READ_CHUNK = 1000


async def require_user_fields(rt: RequestTrackerClient, wanted: tuple[str, ...]) -> list[str]:
    """Fail before any write when RT lacks a configured user custom field, listing those it has."""
    available = await rt.user_custom_field_names()
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ConfigurationError(
            "RT_GRADE_FIELD / RT_STUDENT_ID_FIELD",
            f"RT has no user custom field {', '.join(map(repr, missing))}; the user custom fields RT has are: "
            f"{', '.join(map(repr, available)) or 'none'}. Create the field in RT (LookupType RT::User) or point "
            "the setting at an existing one",
        )
    return available


async def read_current(
    rt: RequestTrackerClient, keys: list[str], fields: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Current values of ``fields`` for ``keys``, read concurrently; per-user failures are returned, not raised."""
    current: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}

    async def read(key: str) -> None:
        try:
            current[key] = await rt.user_fields(key, fields)
        except (RtRecordError, ApiError) as error:
            failures[key] = str(error)

    for start in range(0, len(keys), READ_CHUNK):
        await asyncio.gather(*(read(key) for key in keys[start : start + READ_CHUNK]))
    return current, failures


class RtSource(SyncSource):
    target = TARGET
    default_batch_size = 500
    remembers_written = True
    count_names = ("updated", "unchanged", "failed")

    def __init__(
        self, students: pd.DataFrame, resource: RequestTrackerResource, today: date, invalid_students: int = 0
    ) -> None:
        self.students = students
        self.resource = resource
        self.today = today
        self.invalid_students = invalid_students
        self.fields = list(resource.fields())
        self.rt: RequestTrackerClient | None = None
        self.student_ids: dict[str, str] = {}
        self.requests = 0
        self.retries = 0

    def shard_of(self, key: str) -> str:
        return record_shard(key)

    def label(self, key: str) -> str:
        """Synced records are keyed by RT user id; people know them by student id. Skipped ones are keyed by
        student id already."""
        student = self.student_ids.get(key)
        return f"{student} (RT user {key})" if student else key

    @contextlib.asynccontextmanager
    async def session(self, scope: RunScope) -> AsyncIterator[None]:
        async with self.resource.client(scope.log) as rt:
            self.rt = rt
            try:
                yield
            finally:
                self.requests, self.retries = rt.api.requests_made, rt.api.retries

    async def read_desired(self, scope: RunScope) -> Desired:
        grade_field, student_id_field = self.fields
        desired, skips = desired_custom_fields(
            self.students,
            grade_field,
            student_id_field,
            self.resource.grade_mode(),
            set(scope.shards),
            self.today,
        )
        assert self.rt is not None
        await require_user_fields(self.rt, (grade_field, student_id_field))
        records = dict(scope.config.take(list(desired.items())))
        self.student_ids = {key: str(values[student_id_field]) for key, values in records.items()}
        return Desired(records, skips)

    async def read_current(self, keys: list[str]) -> Current:
        assert self.rt is not None
        if keys:
            self.rt.api.log.info(f"reading the current values of {len(keys)} RT user(s)")
        values, failures = await read_current(
            self.rt, sorted(keys, key=lambda key: (len(key), key)), self.fields
        )
        return Current(dict(values), failures)

    async def write(self, batch: list[PlannedRecord]) -> dict[str, str]:
        """One PUT per user with both fields; refusals, 404s and exhausted retries fail that user only."""
        assert self.rt is not None
        rt = self.rt
        failures: dict[str, str] = {}

        async def put(record: PlannedRecord) -> None:
            try:
                await rt.set_user_fields(record.key, dict(record.desired))
            except AuthenticationError:
                raise
            except (RtRecordError, ApiError) as error:
                failures[record.key] = str(error)

        await asyncio.gather(*(put(record) for record in batch))
        return failures

    def metadata(self, outcome: Any) -> dict[str, Any]:
        return {
            "requests_made": dg.MetadataValue.int(self.requests),
            "retries": dg.MetadataValue.int(self.retries),
            "invalid_students": dg.MetadataValue.int(self.invalid_students),
        }
