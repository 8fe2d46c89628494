"""Record history of the RT sync (``sync.record_history``): an RT user or a student, read now in both systems.

The sync's records are RT users (keyed by RT user id); a student without one is skipped under their student id.
A question names either (``student:<id>`` or ``rt:<id>`` says which, when a student id could be an RT user id
too) and is answered for both: the RT users the students table gives the student now, or that the sync last gave
the student's id to (``sync_last_written``), and the students the table points at the RT user. What the students
table wants is read as the ``students`` asset reads and validates it (every row: a duplicate is found across
rows) and turned into RT's values by the sync's own rule; what RT holds is read with one ``GET /user/{id}`` each.
Neither read writes anything.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from sync_pipelines.core.errors import ApiError
from sync_pipelines.defs.rt.client import RtRecordError
from sync_pipelines.defs.rt.desired import desired_custom_fields
from sync_pipelines.defs.rt.resources import RequestTrackerResource, RtResources
from sync_pipelines.defs.rt.source import TARGET, RtSource
from sync_pipelines.defs.shared.sync_spec import HistoryInputs
from sync_pipelines.defs.students.assets import students_frame
from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import parse_rt_user_id, validate_students
from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.plan import Skip
from sync_pipelines.sync.record_history import RecordNow, Subject
from sync_pipelines.sync.shards import SHARD_KEYS
from sync_pipelines.sync.state import SyncStateStore

STUDENT, RT_USER = "student", "rt"


def _id(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _rt_user_of(row: dict[str, Any]) -> str | None:
    """The RT user id a raw students row gives, if it is one."""
    ok, number = parse_rt_user_id(row.get("rt_user_id"))
    return str(number) if ok and number is not None else None


class RtHistory:
    """The RT sync's side of record history."""

    target = TARGET
    remembers_written = True

    def __init__(
        self,
        request_tracker: RequestTrackerResource,
        students_database: StudentsDatabase,
        log: logging.Logger,
        today: date | None = None,
    ) -> None:
        self.request_tracker = request_tracker
        self.students_database = students_database
        self.log = log
        self.today = today or date.today()

    def disclosure(self) -> Disclosure:
        return Disclosure(personal=RtSource.personal_fields)

    async def subject(self, question: str, state: SyncStateStore) -> Subject:
        grade_field, student_id_field = self.request_tracker.fields()
        rows = self.students_database.read_rows()
        valid, invalid = validate_students(rows)
        desired, skips = desired_custom_fields(
            students_frame(valid),
            grade_field,
            student_id_field,
            self.request_tracker.grade_mode(),
            set(SHARD_KEYS),
            self.today,
        )
        table_ids = {_id(row["student_id"]) for row in rows}
        named, _, value = question.strip().partition(":")
        if named not in (STUDENT, RT_USER) or not value.strip():
            named, value = "", question.strip()
        value = value.strip()
        as_student = named == STUDENT or (not named and (value in table_ids or not value.isdigit()))

        def rt_ids_of(student: str) -> set[str]:
            ids = {key for key, values in desired.items() if values[student_id_field] == student}
            ids |= {_rt_user_of(row) or "" for row in rows if _id(row["student_id"]) == student}
            return ids | set(state.last_written.keys_with(TARGET, student_id_field, student))

        def students_of(rt_user: str) -> set[str]:
            ids = {str(desired[rt_user][student_id_field])} if rt_user in desired else set()
            ids |= {_id(row["student_id"]) for row in rows if _rt_user_of(row) == rt_user}
            written = state.last_written.runs(TARGET, [rt_user]).get((rt_user, student_id_field))
            return ids | ({str(written[0])} if written and written[0] else set())

        if as_student:
            students, rt_users = {value}, rt_ids_of(value)
        else:
            rt_users, students = {value}, students_of(value)
        students.discard("")
        rt_users.discard("")
        rt_keys, student_keys = sorted(rt_users, key=lambda key: (len(key), key)), sorted(students)
        now = await self._rt_now(rt_keys, desired, rows, invalid, skips)
        now.update(self._students_now(student_keys, desired, student_id_field, table_ids, invalid, skips))
        if as_student:
            label = f"student {value}" + (f" (RT user {', '.join(rt_keys)})" if rt_keys else "")
        else:
            label = f"RT user {value}" + (f" (student {', '.join(student_keys)})" if student_keys else "")
        student_of = {key: desired[key][student_id_field] for key in rt_keys if key in desired}
        labels = {
            key: f"RT user {key}" + (f" (student {student_of[key]})" if key in student_of else "")
            for key in rt_keys
        }
        labels.update({key: f"student {key}" for key in student_keys})
        return Subject(label, (*rt_keys, *student_keys), now, labels)

    async def _rt_now(
        self,
        keys: list[str],
        desired: dict[str, dict[str, str]],
        rows: list[dict[str, Any]],
        invalid: list[Any],
        skips: list[Skip],
    ) -> dict[str, RecordNow]:
        """What RT holds for each user, and what the students table wants written there."""
        now: dict[str, RecordNow] = {}
        fields = list(self.request_tracker.fields())
        if not keys:
            return now
        reasons = {row.student_id: row.reason for row in invalid}
        skipped = {skip.key: f"{skip.category}: {skip.reason}" for skip in skips}
        async with self.request_tracker.client(self.log) as rt:
            for key in keys:
                held: dict[str, Any] | None = None
                unread = row_error = None
                try:
                    record = await rt.user_record(key, fields)
                    held = record["values"]
                    if record["disabled"]:
                        row_error = (
                            f"RT user {key} is disabled in RT (Disabled = 1); enable it or clear rt_user_id"
                        )
                except (RtRecordError, ApiError) as error:
                    unread = str(error)
                if key in desired:
                    now[key] = RecordNow(held, unread, desired[key], row_error=row_error)
                    continue
                pointing = [_id(row["student_id"]) for row in rows if _rt_user_of(row) == key]
                why = "; ".join(
                    f"student {student}: "
                    + (
                        f"kept out of the students snapshot: {reasons[student]}"
                        if student in reasons
                        else skipped.get(student, "given another RT user")
                    )
                    for student in pointing
                )
                now[key] = RecordNow(
                    held, unread, None, why or f"no student has rt_user_id {key} now", row_error=row_error
                )
        return now

    @staticmethod
    def _students_now(
        keys: list[str],
        desired: dict[str, dict[str, str]],
        student_id_field: str,
        table_ids: set[str],
        invalid: list[Any],
        skips: list[Skip],
    ) -> dict[str, RecordNow]:
        """A student is not a record of RT: one line on what the students table makes of them now."""
        synced = {values[student_id_field]: key for key, values in desired.items()}
        reasons = {row.student_id: row.reason for row in invalid}
        skipped = {skip.key: skip for skip in skips}
        now: dict[str, RecordNow] = {}
        for key in keys:
            if key in synced:
                note = f"synced as RT user {synced[key]} (its fields are above)"
            elif key in skipped:
                note = f"skipped now: {skipped[key].category}: {skipped[key].reason}"
            elif key in reasons:
                note = f"kept out of the students snapshot now: {reasons[key]}"
            elif key not in table_ids:
                note = "not in the students table now"
            else:
                note = "in the students table, not synced"
            now[key] = RecordNow(note=note)
        return now


def rt_history(run: HistoryInputs[RtResources]) -> RtHistory:
    students_database = run.upstream["students_database"]
    if not isinstance(students_database, StudentsDatabase):
        raise TypeError(f"students_database is a StudentsDatabase, not {type(students_database).__name__}")
    return RtHistory(run.resources.request_tracker, students_database, run.log)
