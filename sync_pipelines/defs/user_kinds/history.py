"""Record history of the user-kind sync (``sync.record_history``): a ZLV user named by id or e-mail, read now.

An e-mail is resolved to the user's id by reading ZLV (trimmed, case-insensitive, as the sync matches Portail DF's
records); from there the user is named by id only: the e-mail is not kept, shown or logged, and is masked in any
reason an answer echoes it in. What ZLV holds is read with one query; what Portail DF wants with the lookup the
sync makes (a GET, no side effect), decided by the sync's own rules (``desired_kinds``): a kind, a skip (not
found, several records, out of scope) or a row error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import sqlalchemy as sa

from sync_pipelines.core.database import timeouts_named
from sync_pipelines.defs.shared.sync_spec import HistoryInputs
from sync_pipelines.defs.user_kinds.database import SETTING, ZlvUser, ZlvUsers
from sync_pipelines.defs.user_kinds.lookups import look_up_users
from sync_pipelines.defs.user_kinds.mapping import NO_EMAIL
from sync_pipelines.defs.user_kinds.resources import PortailDfResource, UserKindsResources, ZlvDatabase
from sync_pipelines.defs.user_kinds.source import TARGET, UserKindsSource, desired_kinds
from sync_pipelines.sync.disclosure import Disclosure
from sync_pipelines.sync.record_history import RecordNotFound, RecordNow, Subject
from sync_pipelines.sync.state import SyncStateStore

MASKED_EMAIL = "(the user's e-mail)"


@dataclass(frozen=True)
class ZlvRow:
    user: ZlvUser
    deleted: bool


def find_users(zlv: ZlvUsers, question: str) -> list[ZlvRow]:
    """The ZLV users ``question`` names: by e-mail (trimmed, case-insensitive) when it holds an ``@``, else by
    id."""
    users = zlv.table
    wanted = question.strip()
    condition = (
        sa.func.lower(sa.func.trim(users.c.email)) == wanted.lower()
        if "@" in wanted
        else sa.cast(users.c.id, sa.String) == wanted
    )
    query = sa.select(users.c.id, users.c.email, users.c.kind, users.c.deleted_at).where(condition)
    with timeouts_named(f"ZLV's table {zlv.table_name!r} ({SETTING})"), zlv.engine.connect() as connection:
        return [
            ZlvRow(ZlvUser(str(row.id), row.email or "", row.kind), row.deleted_at is not None)
            for row in connection.execute(query.order_by(users.c.id))
        ]


def masking(emails: list[str]):
    """A function masking ``emails`` (as written, trimmed, lower-cased, URL-encoded) in a text."""
    forms = sorted(
        {
            form
            for email in emails
            if email.strip()
            for base in (email, email.strip(), email.strip().lower())
            for form in (base, quote(base, safe=""), quote_plus(base))
        },
        key=len,
        reverse=True,
    )

    def mask(text: str | None) -> str | None:
        if text is None:
            return None
        for form in forms:
            text = text.replace(form, MASKED_EMAIL)
        return text

    return mask


class UserKindHistory:
    """The user-kind sync's side of record history."""

    target = TARGET
    remembers_written = False

    def __init__(self, portaildf: PortailDfResource, zlv_database: ZlvDatabase, log: logging.Logger) -> None:
        self.portaildf = portaildf
        self.zlv_database = zlv_database
        self.log = log

    def disclosure(self) -> Disclosure:
        return UserKindsSource(self.portaildf, self.zlv_database).disclosure()

    async def subject(self, question: str, state: SyncStateStore) -> Subject:
        zlv = self.zlv_database.users()
        rows = find_users(zlv, question)
        by_email = "@" in question
        if by_email and not rows:
            raise RecordNotFound(
                f"no ZLV user has the e-mail asked about; check it, or ask by ZLV user id ({SETTING})"
            )
        keys = tuple(row.user.id for row in rows) if rows else (question.strip(),)
        label = "ZLV user " + ", ".join(keys)
        now = {key: RecordNow(note=f"ZLV has no user {key} (deleted from the table?)") for key in keys}
        now.update(await self.read_now(rows))
        return Subject(label, keys, now, {key: f"ZLV user {key}" for key in keys})

    async def read_now(self, rows: list[ZlvRow]) -> dict[str, RecordNow]:
        """ZLV's kind and the kind Portail DF's answer gives, by the sync's rules, for each of ``rows``."""
        now: dict[str, RecordNow] = {}
        lookups: list[ZlvUser] = []
        for row in rows:
            held = {"kind": row.user.kind}
            if row.deleted and not self.zlv_database.includes_deleted():
                reason = (
                    "deleted in ZLV (deleted_at is set): out of the sync's scope unless "
                    "ZLV_INCLUDE_DELETED_USERS=true"
                )
                now[row.user.id] = RecordNow(target=held, not_wanted=reason)
            elif not row.user.email.strip():
                now[row.user.id] = RecordNow(target=held, not_wanted=f"{NO_EMAIL}: the ZLV email is blank")
            else:
                lookups.append(row.user)
        if not lookups:
            return now
        mask = masking([user.email for user in lookups])
        async with self.portaildf.client(self.log) as client:
            results = await look_up_users(client, lookups, self.log)
        desired, _ = desired_kinds(lookups, results, [], self.zlv_database.clears_not_found())
        skips = {skip.key: skip for skip in desired.skips}
        for user in lookups:
            held = {"kind": user.kind}
            skip = skips.get(user.id)
            if user.id in desired.failing:
                now[user.id] = RecordNow(target=held, row_error=mask(desired.failing[user.id]))
            elif skip is not None:
                now[user.id] = RecordNow(target=held, not_wanted=mask(f"{skip.category}: {skip.reason}"))
            else:
                now[user.id] = RecordNow(target=held, wanted=desired.records[user.id])
        return now


def user_kind_history(run: HistoryInputs[UserKindsResources]) -> UserKindHistory:
    return UserKindHistory(run.resources.portaildf, run.resources.zlv_database, run.log)
