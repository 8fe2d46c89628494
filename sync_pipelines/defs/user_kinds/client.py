"""A typed async client for the two Portail DF calls the sync needs: log in, and look a user up by email.

Both authentication versions of the real API are spoken:

* ``v1``: ``POST api-token-auth/`` (form ``username``, ``password``) -> ``{"token"}``; ``Authorization: Token ...``.
* ``v2``: ``POST token/`` (JSON) -> ``{"access", "refresh"}``; ``Authorization: Bearer <access>``. An access
  token expires after minutes, so a lookup answered 401 refreshes it (``POST token/refresh/``), logs in again
  if the refresh token is spent too, and retries that lookup once. A second 401 stops the run.

Many lookups run at once, so re-authentication is guarded by a lock and a generation counter: the first lookup
to see a 401 renews the token, the others wait and retry with the new one instead of each logging in again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sync_pipelines.core.errors import AuthenticationError, ConfigurationError
from sync_pipelines.core.http import ApiClient, ApiError, UnauthorizedError
from sync_pipelines.defs.user_kinds.mapping import normalise_email

SYSTEM = "Portail DF"
CREDENTIAL_VARIABLES = "PORTAILDF_USERNAME / PORTAILDF_PASSWORD"
AUTH_VERSIONS = ("v1", "v2")
LOOKUP_PATH = "utilisateurs"
MAX_PAGES = 100  # 5,000 records for one email: far beyond any real lookup, so something is wrong


class PortailDfAnswerError(ApiError):
    """A lookup answered, but not in the shape of the API (wrong status, no ``results`` list, ...)."""


class PortailDfClient:
    """Use inside ``async with`` of its ``ApiClient``; call ``login()`` once before the lookups."""

    def __init__(self, api: ApiClient, auth_version: str, username: str, password: str) -> None:
        if auth_version not in AUTH_VERSIONS:
            raise ConfigurationError("PORTAILDF_AUTH_VERSION", f"must be 'v1' or 'v2', got {auth_version!r}")
        self.api = api
        self.auth_version = auth_version
        self._username = username
        self._password = password
        self._token: str | None = None
        self._refresh: str | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self.logins = 0
        self.refreshes = 0

    # -- authentication ------------------------------------------------------------------------------------
    @property
    def authorization(self) -> dict[str, str]:
        scheme = "Token" if self.auth_version == "v1" else "Bearer"
        return {"Authorization": f"{scheme} {self._token}"} if self._token else {}

    async def login(self) -> None:
        """Obtain a token with the username and password; refused credentials stop the run at once."""
        if not self._username or not self._password:
            raise ConfigurationError(CREDENTIAL_VARIABLES, "must both be set")
        if self.auth_version == "v1":
            path = "api-token-auth/"
            response = await self.api.request(
                "POST",
                path,
                form={"username": self._username, "password": self._password},
                raise_on_unauthorized=False,
            )
        else:
            path = "token/"
            response = await self.api.request(
                "POST",
                path,
                json_body={"username": self._username, "password": self._password},
                raise_on_unauthorized=False,
            )
        if response.status_code == 404:
            raise ConfigurationError(
                "PORTAILDF_AUTH_VERSION",
                f"the server has no {self.auth_version} login endpoint ({self.api.base_url}{path} answered 404); "
                "check PORTAILDF_AUTH_VERSION and PORTAILDF_API_URL (it ends with /api)",
            )
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(SYSTEM, CREDENTIAL_VARIABLES, f"HTTP {response.status_code} on {path}")
        body = self._json(response, "POST", path)
        wanted = ("token",) if self.auth_version == "v1" else ("access", "refresh")
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or not all(isinstance(body.get(name), str) for name in wanted)
        ):
            raise PortailDfAnswerError(
                SYSTEM, "POST", path, f"HTTP {response.status_code} without {' and '.join(wanted)}"
            )
        for name in wanted:
            self.api.add_secret(body[name])
        self._token = body[wanted[0]]
        self._refresh = body.get("refresh") if self.auth_version == "v2" else None
        self._generation += 1
        self.logins += 1

    async def _refresh_access(self) -> bool:
        """A new v2 access token from the refresh token; False when the refresh token no longer works."""
        if not self._refresh:
            return False
        response = await self.api.request(
            "POST", "token/refresh/", json_body={"refresh": self._refresh}, raise_on_unauthorized=False
        )
        if response.status_code != 200:
            return False
        body = self._json(response, "POST", "token/refresh/")
        if not isinstance(body, dict) or not isinstance(body.get("access"), str):
            return False
        self.api.add_secret(body["access"])
        if isinstance(body.get("refresh"), str):  # simplejwt with ROTATE_REFRESH_TOKENS
            self.api.add_secret(body["refresh"])
            self._refresh = body["refresh"]
        self._token = body["access"]
        self._generation += 1
        self.refreshes += 1
        return True

    async def _reauthenticate(self, seen_generation: int) -> None:
        async with self._lock:
            if self._generation != seen_generation:
                return  # another lookup renewed the token while this one waited
            self.api.log.info(f"{SYSTEM}: token refused (expired?), authenticating again")
            if self.auth_version == "v2" and await self._refresh_access():
                return
            await self.login()

    async def _authorised(self, method: str, path: str, params: dict[str, Any]) -> httpx.Response:
        """Send with the current token; on 401 renew it once and retry; a second refusal stops the run."""
        for attempt in (1, 2):
            generation = self._generation
            response = await self.api.request(
                method, path, params=params, headers=self.authorization, raise_on_unauthorized=False
            )
            if response.status_code == 401 and attempt == 1:
                await self._reauthenticate(generation)
                continue
            if response.status_code in (401, 403):
                raise UnauthorizedError(SYSTEM, CREDENTIAL_VARIABLES, response.status_code, path)
            return response
        raise AssertionError("unreachable")

    # -- lookups -------------------------------------------------------------------------------------------
    async def lookup(self, email: str) -> list[dict[str, Any]]:
        """Every record ``GET utilisateurs?email=`` returns for ``email`` (trimmed, lower-cased, URL-encoded),
        following the pages; a record whose email merely contains this one is returned too (see mapping)."""
        wanted = normalise_email(email)
        records: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params: dict[str, Any] = {"email": wanted} if page == 1 else {"email": wanted, "page": page}
            response = await self._authorised("GET", LOOKUP_PATH, params)
            body = self._json(response, "GET", LOOKUP_PATH)
            if response.status_code != 200:
                raise PortailDfAnswerError(
                    SYSTEM, "GET", LOOKUP_PATH, f"HTTP {response.status_code}: {str(body)[:200]}"
                )
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise PortailDfAnswerError(SYSTEM, "GET", LOOKUP_PATH, "answer has no 'results' list")
            records.extend(results)
            if not body.get("next") or not results:
                return records
        raise PortailDfAnswerError(SYSTEM, "GET", LOOKUP_PATH, f"more than {MAX_PAGES} pages of results")

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        return self.api.parse_json(response, method, path)
