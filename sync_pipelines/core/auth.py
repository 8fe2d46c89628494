"""How a request proves who sends it, and how a refused credential is renewed: strategies ``ApiClient`` owns.

Modelled on httpx's ``Auth.auth_flow`` and on dlt's ``rest_client`` auth objects, but fitted to a client that
retries, bounds concurrency and shares one credential among hundreds of requests in flight. A strategy is
asked three things:

* ``headers()``: the current credential, for one attempt;
* ``renew(api, seen_generation)``: obtain a new credential, under a lock. ``generation`` counts the credentials
  obtained, so when many requests in flight are refused the same token, the first renews it and the others find
  the generation moved on and just resend: one renewal, not one per request;
* ``refused(...)``: the error for a refusal renewing cannot fix (a second 401, a strategy that cannot renew, a
  renewal budget spent). It names the settings to check, never the secret.

The loop itself ("on 401 renew once and resend; a second refusal is the strategy's error") is written once, in
``ApiClient.request``. Strategies:

* ``Auth``: no credential at all; a 401/403 is an ``UnauthorizedError`` (the client's default).
* ``StaticToken``: one token from the settings (RT's ``Authorization: token ...``); nothing to renew.
* ``LoginAuth``: a password login, optionally with a refresh grant that is tried first and a login again when the
  refresh token is spent too (Portail DF v1/v2, the Bakaláři operator).
* ``RotatingRefreshAuth``: an account opened with a stored refresh token that rotates on every grant; each new
  token is handed to a ``store`` callback *before* the access token is used, so that a process killed at any
  later point leaves a working token behind (Bakaláři students, whose tokens EduRPG keeps).

Every token a strategy learns is registered with the client's redactor, so it never reaches a log line, metadata
or an error message. A strategy sees the client only through ``core.auth_client.AuthClient`` (its system, log
and redactor): it never imports the HTTP layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypedDict

from sync_pipelines.core.auth_client import AuthClient
from sync_pipelines.core.errors import UnauthorizedError

if TYPE_CHECKING:
    from typing_extensions import Unpack

RENEW_ON_401 = frozenset({401})


@dataclass(frozen=True)
class Tokens:
    """What a login or refresh grant answers; never logged or put in metadata."""

    access_token: str
    refresh_token: str | None = None
    account_id: str | None = None  # whose account the token opens, when the server says so


@dataclass(frozen=True)
class Refusal:
    """A refusal renewing did not fix, as a strategy's error factory sees it (``path`` already redacted)."""

    system: str
    variables: str
    method: str
    path: str
    status: int
    renewed: bool  # True: refused again right after a renewal; False: no renewal was possible


RefusalError = Callable[[Refusal], Exception]


def unauthorized_error(refusal: Refusal) -> Exception:
    """The default refusal: an ``UnauthorizedError`` naming the client's credential variables."""
    return UnauthorizedError(refusal.system, refusal.variables, refusal.status, refusal.path)


class AuthOptions(TypedDict, total=False):
    """What every strategy takes on top of its own arguments (``Auth``'s keyword arguments)."""

    max_renewals: int | None
    renew_statuses: Collection[int]
    refused: RefusalError
    log_renewals: bool


class Auth:
    """No credential: nothing is sent, nothing can be renewed, and a 401/403 is an ``UnauthorizedError``.

    Subclasses override ``ready``, ``headers``, ``renewable`` and ``_obtain``. ``max_renewals`` bounds renewals
    after a refusal over the strategy's life (``None``: no bound), ``renew_statuses`` are the statuses worth a
    renewal (401; some servers answer 403 to an expired token), and ``refused`` builds the error for the rest.
    ``log_renewals``: announce each renewal at INFO (one shared credential) rather than DEBUG (one per account).
    """

    renewable = False

    def __init__(
        self,
        *,
        max_renewals: int | None = None,
        renew_statuses: Collection[int] = RENEW_ON_401,
        refused: RefusalError = unauthorized_error,
        log_renewals: bool = True,
    ) -> None:
        self.generation = 0
        self.renewals = 0
        self.max_renewals = max_renewals
        self.renew_statuses = frozenset(renew_statuses)
        self._refused = refused
        self.log_renewals = log_renewals
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """Whether a credential is held; a request made without one obtains one first."""
        return True

    def headers(self) -> Mapping[str, str]:
        """The current credential as request headers."""
        return {}

    async def _obtain(self, api: AuthClient) -> None:
        """Obtain a credential (the first, or a new one after a refusal); raises when that is impossible."""
        raise NotImplementedError

    async def obtain(self, api: AuthClient) -> None:
        """Obtain a credential now, whatever is held; not counted as a renewal after a refusal."""
        async with self._lock:
            await self._obtain(api)
            self.generation += 1

    async def renew(self, api: AuthClient, seen_generation: int) -> bool:
        """A new credential unless one was obtained since ``seen_generation``; False when none can be had.

        Runs under the strategy's lock: concurrent callers that saw the same credential refused wait for the
        first one's renewal and then use its result.
        """
        async with self._lock:
            if self.generation != seen_generation:
                return True  # another request renewed the credential while this one waited
            if self.ready:
                if not self.renewable or (
                    self.max_renewals is not None and self.renewals >= self.max_renewals
                ):
                    return False
                self.renewals += 1
                announce = api.log.info if self.log_renewals else api.log.debug
                announce(f"{api.system}: credential refused (expired?), renewing it")
            await self._obtain(api)
            self.generation += 1
            return True

    def refused(self, api: AuthClient, method: str, path: str, status: int, renewed: bool) -> Exception:
        """The error for a refusal renewing did not fix."""
        return self._refused(
            Refusal(api.system, api.credential_variables, method, api.redact(path), status, renewed)
        )


class StaticToken(Auth):
    """One token from the settings, sent as ``<header>: <scheme> <token>``; a refusal is final."""

    def __init__(
        self,
        token: str,
        *,
        scheme: str = "Bearer",
        header: str = "Authorization",
        **options: Unpack[AuthOptions],
    ) -> None:
        super().__init__(**options)
        self._headers = {header: f"{scheme} {token}" if scheme else token}

    def headers(self) -> Mapping[str, str]:
        return self._headers


Login = Callable[[AuthClient], Awaitable[Tokens]]
Refresh = Callable[[AuthClient, str], Awaitable["Tokens | None"]]


class LoginAuth(Auth):
    """A password login (``login``), and optionally a refresh grant (``refresh``) tried before logging in again.

    ``login`` sends the credentials and raises the system's own error when they are refused; ``refresh`` answers
    ``None`` when the refresh token no longer works, which means logging in again. A refresh answer without a
    refresh token keeps the one held (servers that do not rotate refresh tokens).
    """

    renewable = True

    def __init__(
        self,
        login: Login,
        refresh: Refresh | None = None,
        *,
        scheme: str = "Bearer",
        **options: Unpack[AuthOptions],
    ) -> None:
        super().__init__(**options)
        self._login = login
        self._refresh = refresh
        self.scheme = scheme
        self.tokens: Tokens | None = None
        self.logins = 0
        self.refreshes = 0

    @property
    def ready(self) -> bool:
        return self.tokens is not None

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"{self.scheme} {self.tokens.access_token}"} if self.tokens else {}

    async def login(self, api: AuthClient) -> None:
        """Log in now, whatever is held (at the start of a run, so refused credentials stop it at once)."""
        async with self._lock:
            await self._log_in(api)
            self.generation += 1

    async def _obtain(self, api: AuthClient) -> None:
        held = self.tokens
        if held is not None and held.refresh_token and self._refresh is not None:
            renewed = await self._refresh(api, held.refresh_token)
            if renewed is not None:
                _register(api, renewed)
                self.tokens = (
                    renewed if renewed.refresh_token else replace(renewed, refresh_token=held.refresh_token)
                )
                self.refreshes += 1
                return
        await self._log_in(api)

    async def _log_in(self, api: AuthClient) -> None:
        tokens = await self._login(api)
        _register(api, tokens)
        self.tokens = tokens
        self.logins += 1


Grant = Callable[[AuthClient, str], Awaitable[Tokens]]
Store = Callable[[Tokens], Awaitable[None]]


class RotatingRefreshAuth(Auth):
    """An account opened with a stored refresh token that rotates: every grant kills the token it was given.

    ``grant`` exchanges a refresh token for new tokens (raising the system's error when refused); ``store``
    commits the rotated refresh token where the next run will find it, and runs *before* the access token can be
    used: should it fail, its error propagates and the access token is never sent. ``missing`` builds the error
    for an account that has no refresh token at all. ``rotations`` counts the grants that succeeded.
    """

    renewable = True

    def __init__(
        self,
        refresh_token: str | None,
        grant: Grant,
        store: Store,
        *,
        missing: Callable[[], Exception] = lambda: LookupError("no refresh token to open the account with"),
        scheme: str = "Bearer",
        **options: Unpack[AuthOptions],
    ) -> None:
        super().__init__(**options)
        self.refresh_token = refresh_token
        self._grant = grant
        self._store = store
        self._missing = missing
        self.scheme = scheme
        self.tokens: Tokens | None = None
        self.rotations = 0

    @property
    def ready(self) -> bool:
        return self.tokens is not None

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"{self.scheme} {self.tokens.access_token}"} if self.tokens else {}

    async def _obtain(self, api: AuthClient) -> None:
        if not self.refresh_token:
            raise self._missing()
        tokens = await self._grant(api, self.refresh_token)
        _register(api, tokens)
        if not tokens.refresh_token:
            raise ValueError("a rotating refresh grant answered without a new refresh token")
        await self._store(tokens)
        self.rotations += 1
        self.refresh_token = tokens.refresh_token
        self.tokens = tokens


def _register(api: AuthClient, tokens: Tokens) -> None:
    api.add_secret(tokens.access_token)
    api.add_secret(tokens.refresh_token)
