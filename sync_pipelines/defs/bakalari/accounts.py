"""Reading Bakaláři account by account: the operator's password login and each student's stored token.

Bakaláři has no bulk endpoint, and every answer is what the logged-in account sees: the operator account gives
the classes, subjects and teachers of its timetable (a school administrator's covers the school, a teacher's only
that teacher's lessons); each student's class, subjects and teachers come from that student's own account, opened
with the token EduRPG keeps in ``"User"."bakalariToken"``. That token is used as what it is (``stored_token``):

* an access token (a JWT: what EduRPG's login stores today) is sent as it is while its ``exp`` is ahead; once it
  has expired, or Bakaláři refuses it, the student is ``needs_login`` (an access token cannot be renewed, and
  no grant is attempted with it);
* a refresh token is rotated, as below.

Refresh tokens rotate: once a refresh succeeds the old token is dead. The new one is therefore committed to the
student's row, in its own transaction, *before* the access token is used for anything, so a process killed at
any later point leaves a working token behind. Only a process killed while a refresh is in flight (Bakaláři has
rotated the token, the answer has not been committed) loses that student's token: the student then logs in to
EduRPG again. This happens in dry runs too: rotating a token without storing it would lose the credential.

Token safety when EduRPG's database blips: a refresh token is never spent unless every rotation before it was
stored. When committing a rotated token fails, the store stops issuing refresh grants (accounts waiting to be
opened wait; grants already sent finish and queue their tokens too) and retries the rotated-but-unsaved tokens
with backoff for up to ``BAKALARI_TOKEN_SAVE_PATIENCE_SECONDS`` (default 60: long enough to ride out a database
restart). Once they are stored, grants resume. If the database stays away that long, the store gives up: those
students are ``token_not_stored`` (named in the failure: they must log in again), and every account not opened
yet is left alone (``read_failed``: its token was never spent, the next run reads it).

A refresh refused with ``invalid_grant`` means the student must log in again, unless EduRPG stored a newer
token meanwhile (the student logged in, or an overlapping run rotated it): that one is tried once. A 401 in the
middle of an account's reads refreshes that account's token once; a second 401 gives up on the account.

Each account is an authentication strategy of the shared HTTP layer (``sync_pipelines.core.auth``): the operator
a ``LoginAuth`` (password grant, refresh grant first when renewing), each student a ``RotatingRefreshAuth`` whose
``store`` commits the rotated token. Both allow one renewal after a refusal over the session's life; renewing and
resending is the HTTP layer's, and this module says only what each refusal means.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.auth import Auth, LoginAuth, Refusal, RotatingRefreshAuth, StaticToken, Tokens
from sync_pipelines.core.auth_client import AuthClient
from sync_pipelines.core.env import NumberSetting
from sync_pipelines.core.errors import ApiError, AuthenticationError, SyncError
from sync_pipelines.core.http import AUTH_STATUSES
from sync_pipelines.core.redaction import describe_error
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
    uid_prefix,
)
from sync_pipelines.defs.bakalari.client import BakalariClient, LoginRefused
from sync_pipelines.defs.bakalari.edurpg import EduRpgStore, StudentAccount
from sync_pipelines.defs.bakalari.stored_token import ACCESS, REFRESH, StoredToken, classify

OPERATOR_VARIABLES = "BAKALARI_USERNAME / BAKALARI_PASSWORD (and BAKALARI_URL)"
SAVE_PATIENCE = NumberSetting(
    "BAKALARI_TOKEN_SAVE_PATIENCE_SECONDS", 60.0, minimum=0, maximum=3600, unit="seconds"
)
PATIENCE_SETTING = SAVE_PATIENCE.name
MAX_BACKOFF_SECONDS = 2.0
logger = logging.getLogger("sync_pipelines.bakalari")

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


class TokenStoreDown(Exception):
    """EduRPG could not store rotated tokens for longer than the patience: no more tokens are spent this run."""


class TokensAtRisk(SyncError):
    """EduRPG stayed unavailable longer than the patience: the run stops, naming the students whose rotated token
    could not be stored."""

    def __init__(self, students: list[str], patience: float, reason: str | None) -> None:
        self.setting = PATIENCE_SETTING
        self.students = students
        shown = ", ".join(students[:50]) + (f" (and {len(students) - 50} more)" if len(students) > 50 else "")
        super().__init__(
            f"EduRPG (EDURPG_DATABASE_URL) could not store rotated Bakaláři tokens for {patience:g} s "
            f"({reason}); {len(students)} student(s) must log in to EduRPG again: {shown or 'none'}; no other "
            f"token was spent, the next run reads the other students ({PATIENCE_SETTING})"
        )


def save_patience() -> float:
    return SAVE_PATIENCE.number()


class TokenStore:
    """EduRPG's token column from async code: reads and commits run on a small thread pool.

    Also the gate of every refresh grant (``may_rotate``): while a rotated token waits to be stored, no other
    token is spent; see the module's doc."""

    def __init__(
        self,
        store: EduRpgStore,
        workers: int,
        *,
        patience: float | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edurpg-token")
        self.saved = 0
        self.patience = save_patience() if patience is None else patience
        self.log = log or logger
        self.unsaved: dict[str, str] = {}  # bakalari id -> why its rotated token is not stored yet
        self.at_risk: list[str] = []  # rotated tokens never stored: these students must log in again
        self.down: str | None = None  # why the store gave up
        self.waited = 0  # grants held back while a token waited to be stored
        self.last_error: str | None = None
        self._clear: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._clear is None:
            self._clear = asyncio.Event()
            self._clear.set()
        return self._clear

    async def may_rotate(self) -> None:
        """Return when a refresh token may be spent: no rotated token is waiting to be stored. Raises
        ``TokenStoreDown`` once the store gave up (the token is then kept, unspent)."""
        clear = self._event()
        if self.unsaved and self.down is None:
            self.waited += 1
        while True:
            if self.down is not None:
                raise TokenStoreDown(self.down)
            if not self.unsaved:
                return
            await clear.wait()

    async def read(self, bakalari_id: str) -> str | None:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.store.read_token, bakalari_id
        )

    async def save(self, bakalari_id: str, token: str) -> None:
        """Commit a rotated token; on database errors retry with backoff for up to ``patience`` seconds, holding
        every other grant back meanwhile."""
        loop = asyncio.get_running_loop()
        clear = self._event()
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                stored = await loop.run_in_executor(self._executor, self.store.save_token, bakalari_id, token)
            except SQLAlchemyError as error:
                reason = self.last_error = describe_error(error)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.patience
                    if not self.unsaved:
                        self.log.warning(
                            f"EduRPG could not store a rotated Bakaláři token ({reason}); no further token is "
                            f"spent until it is stored; retrying for up to {self.patience:g} s "
                            f"({PATIENCE_SETTING})"
                        )
                    self.unsaved[bakalari_id] = reason
                    clear.clear()
                if now >= deadline or self.down is not None:
                    self._give_up(bakalari_id, attempt, reason)
                    raise TokenNotStored(
                        f"committing the rotated token failed {attempt} times over {self.patience:g} s "
                        f"({reason})"
                    ) from None
                await asyncio.sleep(min(MAX_BACKOFF_SECONDS, 0.1 * 2**attempt, max(0.0, deadline - now)))
                continue
            self._stored(bakalari_id)
            if stored:
                self.saved += 1
                if deadline is not None:
                    self.log.info(f"a rotated Bakaláři token was stored after {attempt} attempts")
                return
            raise TokenNotStored('EduRPG has no "User" row with this bakalariId any more')

    def _stored(self, bakalari_id: str) -> None:
        if self.unsaved.pop(bakalari_id, None) is not None and not self.unsaved:
            self._event().set()

    def _give_up(self, bakalari_id: str, attempts: int, reason: str) -> None:
        self.unsaved.pop(bakalari_id, None)
        self.at_risk.append(bakalari_id)
        if self.down is None:
            self.down = (
                f"EduRPG could not store rotated tokens for {self.patience:g} s ({reason}); this account was "
                "not opened and its token not spent: the next run reads it"
            )
            self.log.error(
                f"EduRPG stayed unavailable for {self.patience:g} s ({PATIENCE_SETTING}): no more Bakaláři "
                "tokens are spent this run"
            )
        if not self.unsaved:
            self._event().set()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


# -- the operator ------------------------------------------------------------------------------------------------
class OperatorSession:
    """The operator account (a school administrator's or a teacher's): password grant; a 401 refreshes (or logs in
    anew) once, a second one ends the run."""

    def __init__(self, client: BakalariClient, username: str, password: str) -> None:
        self.client = client
        self.username = username
        self.password = password
        self.auth = LoginAuth(
            self._password_grant,
            self._refresh_grant,
            max_renewals=1,
            renew_statuses=AUTH_STATUSES,
            refused=_operator_refused,
        )

    async def login(self) -> None:
        await self.auth.login(self.client.api)

    async def get(self, path: str) -> Any:
        return await self.client.get(path, self.auth)

    async def _password_grant(self, api: AuthClient) -> Tokens:
        try:
            return await self.client.login_with_password(self.username, self.password)
        except LoginRefused as error:
            raise AuthenticationError(
                "Bakaláři", OPERATOR_VARIABLES, f"operator login refused: {error}"
            ) from None

    async def _refresh_grant(self, api: AuthClient, refresh_token: str) -> Tokens | None:
        try:
            return await self.client.login_with_refresh_token(refresh_token)
        except LoginRefused:
            return None  # log in with the password again


def _operator_refused(refusal: Refusal) -> Exception:
    again = "again right after logging in" if refusal.renewed else "twice"
    return AuthenticationError(
        "Bakaláři", OPERATOR_VARIABLES, f"/{refusal.path} refused the operator's token {again}"
    )


@dataclass
class SchoolReading:
    """The operator's view: its timetable's lookup tables and the (subject, teacher) pairs, with e-mails, of its
    ``/api/3/subjects``; a teacher's account sees that teacher's lessons only."""

    lookups: SchoolLookups
    subject_rows: list[SubjectRow]
    problems: list[Problem]
    # The school's ``UserUID`` prefix (``"1234"`` of ``"1234/U1AB"``), None when UIDs are bare ids: EduRPG's
    # login stores ``UserUID`` as ``"bakalariId"``, so new teachers' ids are written in that form.
    uid_prefix: str | None = None


async def read_school(session: OperatorSession) -> SchoolReading:
    """Operator-level entities, read once per run (the caller logs in first, so a refusal ends the run at once)."""
    timetable = await session.get("timetable/permanent")
    subjects = await session.get("subjects")
    me = await session.get("user")
    try:
        lookups = parse_timetable_lookups(timetable)
        rows, problems = parse_subject_rows(subjects, owner="Subject:operator")
    except MalformedAnswer as error:
        raise ApiError("Bakaláři", "GET", "/api/3/timetable/permanent, /api/3/subjects", str(error)) from None
    uid = me.get("UserUID") if isinstance(me, dict) else None
    prefix = uid_prefix(str(uid).strip()) if uid else None
    return SchoolReading(lookups, rows, [*lookups.problems, *problems], prefix)


# -- students ----------------------------------------------------------------------------------------------------
class StudentSession:
    """One student's account, opened with the token stored in EduRPG: an access token as it is, a refresh token
    rotated (and committed) first."""

    def __init__(
        self, client: BakalariClient, account: StudentAccount, tokens: TokenStore, now: float | None = None
    ) -> None:
        self.client = client
        self.account = account
        self.store = tokens
        self.stored: StoredToken = classify(account.token)
        if account.token:
            client.api.add_secret(
                account.token
            )  # never in a log line, metadata or an error, whatever its kind
        self.auth: Auth
        if self.stored.kind == ACCESS:
            self.auth = self._access_auth(now)
            return
        self.auth = RotatingRefreshAuth(
            account.token,
            self._grant,
            self._commit,
            missing=lambda: NeedsLogin(
                "no Bakaláři refresh token stored (the student has not logged in to EduRPG)"
            ),
            max_renewals=1,
            renew_statuses=AUTH_STATUSES,
            refused=_student_refused,
            log_renewals=False,
        )

    def _access_auth(self, now: float | None) -> Auth:
        """The stored access token, sent as it is; expired (by its ``exp``) or refused: the student logs in again."""
        if self.stored.expired(now):
            raise NeedsLogin(
                "the stored Bakaláři access token expired "
                f"{self.stored.expired_for(now)} ago (EduRPG stores the one-hour access token at login): "
                "synced again after the student's next login"
            )
        assert self.account.token is not None
        return StaticToken(
            self.account.token,
            renew_statuses=AUTH_STATUSES,
            refused=lambda refusal: NeedsLogin(
                f"Bakaláři refused the stored access token (HTTP {refusal.status} on {refusal.path}); "
                "it cannot be renewed: the student must log in to EduRPG again"
            ),
        )

    @property
    def token_kind(self) -> str:
        return self.stored.kind

    @property
    def refresh_token(self) -> str | None:
        return self.auth.refresh_token if isinstance(self.auth, RotatingRefreshAuth) else None

    @property
    def rotations(self) -> int:
        return self.auth.rotations if isinstance(self.auth, RotatingRefreshAuth) else 0

    @property
    def login_user_id(self) -> str | None:
        if isinstance(self.auth, RotatingRefreshAuth):
            return self.auth.tokens.account_id if self.auth.tokens else None
        return self.stored.account_id

    async def refresh(self) -> None:
        """Refresh grant, then commit the rotated token before anything else happens."""
        if not isinstance(self.auth, RotatingRefreshAuth):
            raise NeedsLogin("the stored token is an access token: it cannot be refreshed")
        await self.auth.obtain(self.client.api)

    async def get(self, path: str) -> Any:
        return await self.client.get(path, self.auth)

    async def _grant(self, api: AuthClient, refresh_token: str) -> Tokens:
        # Never spend a refresh token while an earlier rotation waits to be stored (EduRPG unavailable).
        await self.store.may_rotate()
        try:
            return await self.client.login_with_refresh_token(refresh_token)
        except LoginRefused as error:
            if error.error != "invalid_grant":
                raise
            stored = await self.store.read(self.account.bakalari_id)
            if not stored or stored == refresh_token:
                raise NeedsLogin(f"Bakaláři refused the stored refresh token ({error.description})") from None
            if classify(stored).kind == ACCESS:
                raise NeedsLogin(
                    "Bakaláři refused the stored refresh token; EduRPG now holds an access token from a newer "
                    "login, which the next run uses"
                ) from None
        # EduRPG holds a newer token than the one this run read: the student logged in, or a run overlapped.
        if isinstance(self.auth, RotatingRefreshAuth):  # the only auth whose renewal comes here
            self.auth.refresh_token = stored
        await self.store.may_rotate()
        try:
            return await self.client.login_with_refresh_token(stored)
        except LoginRefused as again:
            if again.error != "invalid_grant":
                raise
            raise NeedsLogin(f"Bakaláři refused the stored refresh token ({again.description})") from None

    async def _commit(self, tokens: Tokens) -> None:
        assert tokens.refresh_token is not None  # the strategy refuses grants without one
        await self.store.save(self.account.bakalari_id, tokens.refresh_token)


def _student_refused(refusal: Refusal) -> Exception:
    if refusal.renewed:
        return AccountUnauthorized(f"/{refusal.path} refused the token again after one refresh")
    return AccountUnauthorized(f"/{refusal.path} refused a freshly refreshed token")


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
    token_kind: str = REFRESH  # ``access`` or ``refresh``: what EduRPG had stored

    @property
    def ok(self) -> bool:
        return self.category is None

    @property
    def key(self) -> str:
        return f"User:{self.account.bakalari_id}"


async def read_student(client: BakalariClient, account: StudentAccount, tokens: TokenStore) -> StudentReading:
    """The student's user record (class) and subjects; every failure becomes a category and a reason."""
    reading = StudentReading(account, token_kind=classify(account.token).kind)
    try:
        session = StudentSession(client, account, tokens)
    except NeedsLogin as error:
        reading.category, reading.reason = NEEDS_LOGIN, str(error)
        return reading
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
    except TokenStoreDown as error:
        reading.category, reading.reason = READ_FAILED, str(error)
    except SQLAlchemyError as error:
        reading.category, reading.reason = READ_FAILED, f"EduRPG: {describe_error(error)}"
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
    tokens.log = client.api.log

    async def one(account: StudentAccount) -> StudentReading:
        async with gate:
            return await read_student(client, account, tokens)

    readings = await asyncio.gather(*(one(account) for account in accounts))
    if tokens.down is not None:
        # EduRPG stayed away: nothing else this run does can reach it either. Stop, naming who is at risk.
        raise TokensAtRisk(sorted(tokens.at_risk), tokens.patience, tokens.last_error)
    return list(readings), time.monotonic() - started
