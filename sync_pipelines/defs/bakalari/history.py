"""Record history of the Bakaláři sync (``sync.record_history``): a user named by Bakaláři id or EduRPG id.

EduRPG's rows are read as a run reads them (one snapshot); the user's record is ``User:<Bakaláři id>``, whatever
the question named. What Bakaláři wants is what a dry run over that one account would plan: the operator's
lookups, and for a student their own account, opened with the token EduRPG keeps, exactly as every run opens
it. Opening an account with a refresh token rotates it (Bakaláři's rule); the new token is committed to EduRPG
before it is used, as in every run, dry runs included, so asking never costs the student a login. An access
token is used as it is. Nothing else is written. Class ids are shown with the class's name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sync_pipelines.defs.bakalari.accounts import (
    FAILING_CATEGORIES,
    OperatorSession,
    StudentReading,
    TokenStore,
    read_school,
    read_students,
)
from sync_pipelines.defs.bakalari.desired import build_desired
from sync_pipelines.defs.bakalari.edurpg import EduRpgSnapshot, EduRpgStore
from sync_pipelines.defs.bakalari.resources import BakalariResource, BakalariResources, EduRpgDatabase
from sync_pipelines.defs.bakalari.source import TARGET, BakalariSource, target_rows
from sync_pipelines.defs.shared.sync_spec import HistoryInputs
from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.record_history import RecordNow, Subject
from sync_pipelines.sync.state import SyncStateStore

USER_REF = "user"


def bakalari_id_of(snapshot: EduRpgSnapshot, question: str) -> str:
    """The Bakaláři id a question names: an EduRPG user id (its ``"ExternalRef"``, else its ``bakalariId``), a
    ``bakalariId`` as EduRPG's login stores it, or a Bakaláři id as it is."""
    asked = question.strip()
    row = snapshot.users.get(asked) or snapshot.users_by_bakalari_id.get(asked)
    if row is None:
        return asked
    ref = next(
        (r for r in snapshot.refs_of_type(USER_REF) if r["internalId"] == row["id"]),
        None,
    )
    return str(ref["externalId"]) if ref else str(row.get("bakalariId") or asked)


class BakalariHistory:
    """The Bakaláři sync's side of record history."""

    target = TARGET
    remembers_written = False

    def __init__(
        self, bakalari: BakalariResource, edurpg_database: EduRpgDatabase, log: logging.Logger
    ) -> None:
        self.bakalari = bakalari
        self.edurpg_database = edurpg_database
        self.log = log

    def disclosure(self) -> Disclosure:
        return Disclosure(personal=BakalariSource.personal_fields)

    async def subject(self, question: str, state: SyncStateStore) -> Subject:
        store = self.edurpg_database.store()
        snapshot = await asyncio.to_thread(store.snapshot)
        bakalari_id = bakalari_id_of(snapshot, question)
        key = f"User:{bakalari_id}"
        held = target_rows(snapshot, [key])[key]
        internal = held["id"] if held else None
        label = f"Bakaláři user {bakalari_id}" + (f" (EduRPG user {internal})" if internal else "")
        now = await self.read_now(store, snapshot, bakalari_id, key, held)
        names = {"classId": {str(row["id"]): str(row["name"]) for row in snapshot.classes.values()}}
        return Subject(label, (key,), {key: now}, {key: label}, names)

    async def read_now(
        self, store: EduRpgStore, snapshot: EduRpgSnapshot, bakalari_id: str, key: str, held: Any
    ) -> RecordNow:
        """What Bakaláři wants for the user now: the operator's lookups and, for a student, their account."""
        account = next((a for a in store.student_accounts() if a.bakalari_id == bakalari_id), None)
        readings: list[StudentReading] = []
        async with self.bakalari.client(self.log) as client:
            operator = OperatorSession(client, self.bakalari.username, self.bakalari.password)
            await operator.login()
            school = await read_school(operator)
            if account is not None:
                tokens = TokenStore(store, self.edurpg_database.token_workers(), log=self.log)
                try:
                    readings, _ = await read_students(client, [account], tokens, 1)
                finally:
                    tokens.close()
        entities = build_desired(school, readings, snapshot)
        target = None if held is None else dict(held)
        reading = readings[0] if readings else None
        if reading is not None and reading.category in FAILING_CATEGORIES:
            return RecordNow(target, row_error=f"{reading.category}: {reading.reason}")
        if reading is not None and reading.category:
            return RecordNow(target, not_wanted=f"{reading.category}: {reading.reason}")
        skip = next((s for s in entities.skips if s.key == key), None)
        if skip is not None:
            return RecordNow(target, not_wanted=f"{skip.category}: {skip.reason}")
        wanted = entities.desired.get(key)
        if wanted is None:
            why = (
                "Bakaláři shows no such user now: not a teacher in the operator's timetable, and no student "
                "account EduRPG holds a token for"
            )
            return RecordNow(target, not_wanted=why)
        return RecordNow(target, wanted=wanted)


def bakalari_history(run: HistoryInputs[BakalariResources]) -> BakalariHistory:
    return BakalariHistory(run.resources.bakalari, run.resources.edurpg_database, run.log)
