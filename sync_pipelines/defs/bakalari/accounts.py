"""Reading Bakaláři account by account: the operator's password login and each student's rotating refresh token.

Bakaláři has no bulk endpoint: the school's classes, subjects and teachers come from the operator (teacher)
account; each student's class and subjects from that student's own account, opened with the refresh token
EduRPG keeps in ``"User"."bakalariToken"``.

Refresh tokens rotate: once a refresh succeeds the old token is dead. The new one is therefore committed to the
student's row, in its own transaction, *before* the access token is used for anything, so a process killed at
any later point leaves a working token behind. Only a process killed while a refresh is in flight (Bakaláři has
rotated the token, the answer has not been committed) loses that student's token: the student then logs in to
EduRPG again. This happens in dry runs too: rotating a token without storing it would lose the credential.

A refresh refused with ``invalid_grant`` means the student must log in again, unless EduRPG stored a newer
token meanwhile (the student logged in, or an overlapping run rotated it): that one is tried once. A 401 in the
middle of an account's reads refreshes that account's token once; a second 401 gives up on the account.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.errors import AuthenticationError
from sync_pipelines.core.http import ApiError
from sync_pipelines.defs.bakalari.answers import (
    MalformedAnswer,
    Problem,
    SchoolLookups,
    SubjectRow,
    UserRecord,
    parse_subject_rows,
    parse_timetable_lookups,
    parse_user,
    same_account,
)
from sync_pipelines.defs.bakalari.client import AccessDenied, BakalariClient, LoginRefused, Tokens
from sync_pipelines.defs.bakalari.edurpg import EduRpgStore, StudentAccount

OPERATOR_VARIABLES = "BAKALARI_USERNAME / BAKALARI_PASSWORD (and BAKALARI_URL)"
TOKEN_SAVE_ATTEMPTS = 3

# Skip categories of a student account (metadata ``skipped_<category>``).
NEEDS_LOGIN = "needs_login"
UNAUTHORIZED = "unauthorized"
LOGIN_REFUSED = "login_refused"
MALFORMED = "malformed"
IDENTITY_MISMATCH = "identity_mismatch"
READ_FAILED = "read_failed"
TOKEN_NOT_STORED = "token_not_stored"
# Categories that fail the run (after everything else is written), so the alert fires.
FAILING_CATEGORIES = frozenset({READ_FAILED, TOKEN_NOT_STORED})


class NeedsLogin(Exception):
    """The stored refresh token no longer works: only the student logging in to EduRPG again can fix it."""


class AccountUnauthorized(Exception):
    """401 again right after a fresh token: the sync gives up on this account for this run."""


class TokenNotStored(Exception):
    """A rotated token could not be committed to EduRPG."""


class TokenStore:
    """EduRPG's token column from async code: reads and commits run on a small thread pool."""

    def __init__(self, store: EduRpgStore, workers: int) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edurpg-token")
        self.saved = 0

    async def read(self, bakalari_id: str) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.store.read_token, bakalari_id
        )

    async def save(self, bakalari_id: str, token: str) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(1, TOKEN_SAVE_ATTEMPTS + 1):
            try:
                if await loop.run_in_executor(self._executor, self.store.save_token, bakalari_id, token):
                    self.saved += 1
                    return
                raise TokenNotStored('EduRPG has no "User" row with this bakalariId any more')
            except SQLAlchemyError as error:
                if attempt == TOKEN_SAVE_ATTEMPTS:
                    raise TokenNotStored(
                        f"committing the rotated token failed {attempt} times: {type(error).__name__}"
                    ) from None
                await asyncio.sleep(0.2 * attempt)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


# -- the operator ------------------------------------------------------------------------------------------------
class OperatorSession:
    """The operator (teacher) account: password grant; a 401 logs in anew once, a second one ends the run."""

    def __init__(self, client: BakalariClient, username: str, password: str) -> None:
        self.client = client
        self.username = username
        self.password = password
        self.tokens: Tokens | None = None
        self.relogged = False

    async def login(self) -> None:
        try:
            self.tokens = await self.client.login_with_password(self.username, self.password)
        except LoginRefused as error:
            raise AuthenticationError(
                "Bakaláři", OPERATOR_VARIABLES, f"operator login refused: {error}"
            ) from None

    async def get(self, path: str) -> Any:
        if self.tokens is None:
            await self.login()
        assert self.tokens is not None
        try:
            return await self.client.get(path, self.tokens.access_token)
        except AccessDenied:
            if self.relogged:
                raise AuthenticationError(
                    "Bakaláři", OPERATOR_VARIABLES, f"/api/3/{path} refused the operator's token twice"
                ) from None
        self.relogged = True
        try:
            self.tokens = await self.client.login_with_refresh_token(self.tokens.refresh_token)
        except LoginRefused:
            await self.login()
        try:
            return await self.client.get(path, self.tokens.access_token)
        except AccessDenied as error:
            raise AuthenticationError(
                "Bakaláři", OPERATOR_VARIABLES, f"{error} again right after logging in"
            ) from None


@dataclass
class SchoolReading:
    """The operator's view: the timetable's lookup tables and every (subject, teacher) pair with e-mails."""

    lookups: SchoolLookups
    subject_rows: list[SubjectRow]
    problems: list[Problem]


async def read_school(session: OperatorSession) -> SchoolReading:
    """Operator-level entities, read once per run (the caller logs in first, so a refusal ends the run at once)."""
    timetable = await session.get("timetable/permanent")
    subjects = await session.get("subjects")
    try:
        lookups = parse_timetable_lookups(timetable)
        rows, problems = parse_subject_rows(subjects, owner="Subject:operator")
    except MalformedAnswer as error:
        raise ApiError("Bakaláři", "GET", "/api/3/timetable/permanent, /api/3/subjects", str(error)) from None
    return SchoolReading(lookups, rows, [*lookups.problems, *problems])


# -- students ----------------------------------------------------------------------------------------------------
class StudentSession:
    """One student's account, opened with the refresh token stored in EduRPG."""

    def __init__(self, client: BakalariClient, account: StudentAccount, tokens: TokenStore) -> None:
        self.client = client
        self.account = account
        self.store = tokens
        self.refresh_token = account.token
        self.access_token: str | None = None
        self.login_user_id: str | None = None
        self.reauthenticated = False
        self.rotations = 0

    async def refresh(self) -> None:
        """Refresh grant, then commit the rotated token before anything else happens."""
        if not self.refresh_token:
            raise NeedsLogin("no Bakaláři refresh token stored (the student has not logged in to EduRPG)")
        try:
            tokens = await self.client.login_with_refresh_token(self.refresh_token)
        except LoginRefused as error:
            if error.error != "invalid_grant":
                raise
            stored = await self.store.read(self.account.bakalari_id)
            if not stored or stored == self.refresh_token:
                raise NeedsLogin(f"Bakaláři refused the stored refresh token ({error.description})") from None
            # EduRPG holds a newer token than the one this run read: the student logged in, or a run overlapped.
            self.refresh_token = stored
            try:
                tokens = await self.client.login_with_refresh_token(stored)
            except LoginRefused as again:
                if again.error != "invalid_grant":
                    raise
                raise NeedsLogin(f"Bakaláři refused the stored refresh token ({again.description})") from None
        await self.store.save(self.account.bakalari_id, tokens.refresh_token)
        self.rotations += 1
        self.refresh_token = tokens.refresh_token
        self.access_token = tokens.access_token
        self.login_user_id = tokens.user_id

    async def get(self, path: str) -> Any:
        if self.access_token is None:
            await self.refresh()
        assert self.access_token is not None
        try:
            return await self.client.get(path, self.access_token)
        except AccessDenied:
            if self.reauthenticated:
                raise AccountUnauthorized(f"/api/3/{path} refused a freshly refreshed token") from None
        self.reauthenticated = True
        await self.refresh()
        try:
            return await self.client.get(path, self.access_token)
        except AccessDenied:
            raise AccountUnauthorized(f"/api/3/{path} refused the token again after one refresh") from None


@dataclass
class StudentReading:
    """What one student account gave, or why it was left out (``category``/``reason``)."""

    account: StudentAccount
    user: UserRecord | None = None
    subject_rows: list[SubjectRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    category: str | None = None
    reason: str | None = None
    rotations: int = 0

    @property
    def ok(self) -> bool:
        return self.category is None

    @property
    def key(self) -> str:
        return f"User:{self.account.bakalari_id}"


async def read_student(client: BakalariClient, account: StudentAccount, tokens: TokenStore) -> StudentReading:
    """The student's user record (class) and subjects; every failure becomes a category and a reason."""
    session = StudentSession(client, account, tokens)
    reading = StudentReading(account)
    try:
        user = parse_user(await session.get("user"))
        if not same_account(account.bakalari_id, user.uid, session.login_user_id):
            reading.category = IDENTITY_MISMATCH
            reading.reason = (
                f"the stored token opens Bakaláři account {user.uid!r}, not {account.bakalari_id!r}"
            )
        else:
            rows, problems = parse_subject_rows(
                await session.get("subjects"), owner=f"Enrollment:{account.bakalari_id}"
            )
            reading.user, reading.subject_rows, reading.problems = user, rows, problems
    except NeedsLogin as error:
        reading.category, reading.reason = NEEDS_LOGIN, str(error)
    except AccountUnauthorized as error:
        reading.category, reading.reason = UNAUTHORIZED, str(error)
    except LoginRefused as error:
        reading.category, reading.reason = LOGIN_REFUSED, f"refresh refused: {error}"
    except TokenNotStored as error:
        reading.category = TOKEN_NOT_STORED
        reading.reason = f"{error}; the student must log in to EduRPG again"
    except MalformedAnswer as error:
        reading.category, reading.reason = MALFORMED, str(error)
    except ApiError as error:
        reading.category, reading.reason = READ_FAILED, str(error)
    reading.rotations = session.rotations
    return reading


async def read_students(
    client: BakalariClient, accounts: list[StudentAccount], tokens: TokenStore, in_flight: int
) -> tuple[list[StudentReading], float]:
    """Every account, ``in_flight`` at a time (the HTTP layer caps requests separately); in account order."""
    started = time.monotonic()
    gate = asyncio.Semaphore(in_flight)

    async def one(account: StudentAccount) -> StudentReading:
        async with gate:
            return await read_student(client, account, tokens)

    readings = await asyncio.gather(*(one(account) for account in accounts))
    return list(readings), time.monotonic() - started
