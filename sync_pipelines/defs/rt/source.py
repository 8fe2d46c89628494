"""The RT sync as a source for the engine: students' grades and IDs desired, RT users' custom fields current.

Desired values come from the validated students table (pure, see ``desired``); current values are read from RT
in pages of 100 users (one GET each for a few users), only for users not remembered from earlier runs; a batch is
written with one PUT per user, and a change counts as written only when RT's reply confirms it. Before anything
is read, RT must have both configured user custom fields, enabled and applied to users; their types are read once
per run, and values are sent and compared as RT takes and compares them (``fields``: a Select's list spelling, a
held value in another case kept, a value the list lacks reported once and not sent).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg

from sync_pipelines.core.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    PagesDoNotAdvance,
    TooManyPages,
)
from sync_pipelines.core.paging import read_pages_ahead
from sync_pipelines.defs.rt.client import (
    PER_PAGE,
    USER_PAGES,
    FieldListing,
    RequestTrackerClient,
    RtRecordError,
)
from sync_pipelines.defs.rt.desired import desired_custom_fields, record_shard
from sync_pipelines.defs.rt.fields import SELECT, NotListed, RtField, as_rt_takes, held_as_wanted, holds
from sync_pipelines.defs.rt.resources import RequestTrackerResource
from sync_pipelines.defs.shared.api_source import ApiSource
from sync_pipelines.sync.config import RunScope
from sync_pipelines.sync.outcome import Current, Desired, SyncOutcome
from sync_pipelines.sync.plan import PlannedRecord

if TYPE_CHECKING:
    import pandas as pd

TARGET = "rt_user_custom_fields"
READ_CHUNK = 1000
# A page of 100 users with their fields costs RT about as much as this many single-user GETs (measured on RT 5:
# ~1.2 s against ~0.4 s): fewer users than this are read one by one.
PAGE_COST = 3
PAGE_WINDOW = 4  # pages asked for at once (the client's concurrency limit still applies)
FIELD_SETTINGS = "RT_GRADE_FIELD / RT_STUDENT_ID_FIELD"
RIGHTS = (
    "the RT user the token belongs to needs SeeCustomField to read the fields, and ModifyCustomField and "
    "AdminUsers to write them (granted globally, e.g. Admin > Global > User Rights)"
)


async def require_user_fields(rt: RequestTrackerClient, wanted: tuple[str, ...]) -> list[str]:
    """Fail before any write unless each configured field is an enabled user custom field applied to users.

    Returns the names of the enabled user custom fields RT has.
    """
    listing = await _required_fields(rt, wanted)
    return [field.name for field in listing.fields if not field.disabled]


async def synced_fields(rt: RequestTrackerClient, wanted: tuple[str, ...]) -> dict[str, RtField]:
    """``require_user_fields``' checks, then each of ``wanted`` as RT defines it: its type and MaxValues from the
    field listing those checks read, and a Select's values from its record (one GET per Select field)."""
    listing = await _required_fields(rt, wanted)
    enabled = {field.name: field for field in listing.fields if not field.disabled}
    fields = {}
    for name in wanted:
        field = enabled[name]
        own_list = field.type == SELECT and field.own_values
        listed = await rt.select_values(field.id) if own_list else None
        fields[name] = RtField(field.id, name, field.type, field.max_values, listed)
    return fields


async def _required_fields(rt: RequestTrackerClient, wanted: tuple[str, ...]) -> FieldListing:
    listing = await rt.user_custom_fields()
    if not listing.fields:
        if not listing.total_known:
            raise ConfigurationError(
                "RT_TOKEN",
                "RT lists no user custom fields to this token: its user lacks the SeeCustomField right "
                f"(RT shows such a user no fields at all); {RIGHTS}",
            )
        raise ConfigurationError(
            FIELD_SETTINGS,
            f"RT has no user custom fields at all; create {', '.join(map(repr, wanted))} in RT "
            f"(LookupType RT::User, applied to all users). If they exist, {RIGHTS}",
        )
    available = [field.name for field in listing.fields if not field.disabled]
    disabled = {field.name for field in listing.fields if field.disabled}
    missing = [name for name in wanted if name not in available]
    if missing:
        off = [name for name in missing if name in disabled]
        cause = (
            f"RT's user custom field {', '.join(map(repr, off))} is disabled; enable it in RT or point the "
            "setting at another field"
            if off == missing
            else f"RT has no user custom field {', '.join(map(repr, missing))}; the user custom fields RT has are: "
            f"{', '.join(map(repr, available)) or 'none'}. Create the field in RT (LookupType RT::User) or point "
            "the setting at an existing one"
        )
        raise ConfigurationError(FIELD_SETTINGS, cause)
    applied = await rt.applied_user_field_names()
    if applied is not None:
        unapplied = [name for name in wanted if name not in applied]
        if unapplied:
            raise ConfigurationError(
                FIELD_SETTINGS,
                f"RT's user custom field {', '.join(map(repr, unapplied))} exists but is not applied to users: RT "
                "ignores every write to it (PUT answers 200 with no message). Apply it to users in RT (Admin > "
                "Custom Fields > the field > Applies to), or point the setting at a field that is",
            )
    return listing


def _record_values(key: str, record: dict[str, Any], current: dict, failures: dict) -> None:
    if record["disabled"]:
        failures[key] = f"RT user {key} is disabled in RT (Disabled = 1); enable it in RT or clear rt_user_id"
    else:
        current[key] = record["values"]


async def read_current(
    rt: RequestTrackerClient, keys: list[str], fields: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Current values of ``fields`` for ``keys``; per-user failures are returned, not raised.

    Many users: RT's users are read 100 to a page, by id, up to the largest id wanted (stopping as soon as one-by-one
    reads of the users still missing would cost RT less than the pages left). Few users, users the pages did not
    show, and a page RT would not give: one ``GET /user/{id}`` each.
    """
    current: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    wanted = {key for key in keys if key.isdigit()}
    if len(wanted) > PAGE_COST:
        await _read_from_pages(rt, wanted, fields, current, failures)
    rest = [key for key in keys if key not in current and key not in failures]

    async def read(key: str) -> None:
        try:
            _record_values(key, await rt.user_record(key, fields), current, failures)
        except (RtRecordError, ApiError) as error:
            failures[key] = str(error)

    for start in range(0, len(rest), READ_CHUNK):
        await asyncio.gather(*(read(key) for key in rest[start : start + READ_CHUNK]))
    return current, failures


async def _read_from_pages(
    rt: RequestTrackerClient, wanted: set[str], fields: list[str], current: dict, failures: dict
) -> None:
    """Read ``wanted`` users from RT's pages (ordered by id) into ``current``/``failures``, through the paginator
    (``USER_PAGES``, ``PAGE_WINDOW`` pages asked at once: ``paging.read_pages_ahead``), up to the page holding the
    largest id wanted. The reading stops where one-by-one reads would cost less, at the paginator's bound
    (``USER_PAGES.max_pages``), or at a page that does not advance (the same users again, or no higher id than the
    page before: a server whose next page is the same page); a page RT refuses is left out. The caller reads the
    users still missing one by one."""
    highest = max(int(key) for key in wanted)
    log = rt.api.log
    last_id = 0

    def missing() -> int:
        return sum(1 for key in wanted if key not in current and key not in failures)

    pages = read_pages_ahead(
        USER_PAGES,
        lambda number: rt.users_page(number, fields),
        PAGE_WINDOW,
        enough=lambda: last_id >= highest or not missing(),
        worth_reading=lambda pages_left: pages_left * PAGE_COST <= missing(),  # else the rest one by one
    )
    try:
        async for page in pages:
            if page.asked > 1 and page.users and (page.last_id or 0) <= last_id:
                raise PagesDoNotAdvance(f"page {page.asked} goes back to user ids already read")
            for key, record in page.users.items():
                if key in wanted:
                    _record_values(key, record, current, failures)
            last_id = max(last_id, page.last_id or 0)
    except PagesDoNotAdvance as stalled:
        log.warning(
            f"RT's user pages do not advance ({stalled.reason}); reading the users missing one by one"
        )
    except TooManyPages:
        log.warning(
            f"RT's users fill more than {USER_PAGES.max_pages} pages of {PER_PAGE}; reading the users missing one "
            "by one"
        )
    except ApiError as error:  # the first page: the pages after it that fail are left out
        log.warning(f"reading RT users in pages failed ({error}); reading them one by one")
    finally:
        await pages.aclose()


class RtSource(ApiSource):
    target = TARGET
    source_name = "the students table"
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
        # This run's fields as RT defines them, the values sent (as RT takes them), and those never sent.
        self.definitions: dict[str, RtField] = {}
        self.wanted: dict[str, dict[str, Any]] = {}
        self.not_listed = NotListed()

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
                self.record_api(rt.api)

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
        self.definitions = await synced_fields(self.rt, (grade_field, student_id_field))
        records = dict(scope.config.take(list(desired.items())))
        self.student_ids = {key: str(values[student_id_field]) for key, values in records.items()}
        self.wanted, self.not_listed = as_rt_takes(records, self.definitions)
        settings = {grade_field: "RT_GRADE_FIELD", student_id_field: "RT_STUDENT_ID_FIELD"}
        for line in self.not_listed.lines(settings):
            scope.log.warning(line)
        return Desired(dict(self.wanted), skips)

    async def read_current(self, keys: list[str]) -> Current:
        assert self.rt is not None
        if keys:
            self.rt.api.log.info(f"reading the current values of {len(keys)} RT user(s)")
        values, failures = await read_current(
            self.rt, sorted(keys, key=lambda key: (len(key), key)), self.fields
        )
        return Current(held_as_wanted(values, self.wanted, self.definitions), failures)

    def _held(self, name: str, held: Any, wanted: Any) -> bool:
        field = self.definitions.get(name)
        return field.counts_as(held, wanted) if field is not None else holds(held, wanted)

    async def write(self, batch: list[PlannedRecord]) -> dict[str, str]:
        """One PUT per user carrying the fields the plan changes and no other: a field the plan does not change is
        never sent, so a value someone else set in RT meanwhile stays (and every value RT changes has its audit
        row). A change RT's reply does not confirm, a refusal, a 404 or exhausted retries fail that user only
        (retried next run)."""
        assert self.rt is not None
        rt = self.rt
        failures: dict[str, str] = {}

        async def put(record: PlannedRecord) -> None:
            changed = {change.field: change.new for change in record.changes}
            try:
                reply = await rt.set_user_fields(record.key, changed)
                if reply.written:
                    return
                if not reply.refusals:
                    # No message and no refusal: RT may have made the change already (a PUT resent after a timeout
                    # answers []); what RT holds now decides.
                    values = (await rt.user_record(record.key, list(changed)))["values"]
                    if all(self._held(name, values.get(name), value) for name, value in changed.items()):
                        return
                failures[record.key] = reply.reason(rt.api.excerpt)
            except AuthenticationError:
                raise
            except (RtRecordError, ApiError) as error:
                failures[record.key] = str(error)

        await asyncio.gather(*(put(record) for record in batch))
        return failures

    def metadata(self, outcome: SyncOutcome) -> dict[str, Any]:
        metadata = {
            **self.api_metadata(),
            "invalid_students": dg.MetadataValue.int(self.invalid_students),
        }
        if self.not_listed:
            # {field: {value: users}}: values a Select's list lacks, not sent (the run's warning says which).
            metadata["values_not_sent"] = dg.MetadataValue.json(self.not_listed.counts())
        return metadata
