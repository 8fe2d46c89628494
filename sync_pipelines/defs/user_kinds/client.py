"""A typed async client for the two Portail DF calls the sync needs: log in, and look a user up by email.

Both authentication versions of the real API are spoken:

* ``v1``: ``POST api-token-auth/`` (form ``username``, ``password``) -> ``{"token"}``; ``Authorization: Token ...``.
* ``v2``: ``POST token/`` (JSON) -> ``{"access", "refresh"}``; ``Authorization: Bearer <access>``. An access
  token expires after minutes, so a lookup answered 401 refreshes it (``POST token/refresh/``), logs in again
  if the refresh token is spent too, and retries that lookup once. A second 401 stops the run.

Either is a ``LoginAuth`` strategy of the shared HTTP layer (``portaildf_auth``), which owns the renewal: many
lookups run at once, and the strategy's lock and generation counter make the first lookup to see a 401 renew the
token while the others wait and resend with the new one, instead of each logging in again. A lookup follows the
answer's pages (``results``, ``next``, ``page``) with the shared paginator, bounded at ``MAX_PAGES``.
"""

from __future__ import annotations

from sync_pipelines.core.auth import LoginAuth, Tokens
from sync_pipelines.core.auth_client import AuthClient
from sync_pipelines.core.errors import ApiError, AuthenticationError, ConfigurationError
from sync_pipelines.core.http import ApiClient
from sync_pipelines.core.json_value import JsonValue
from sync_pipelines.core.paging import PageNumberPaginator, PageParams, collect

SYSTEM = "Portail DF"
CREDENTIAL_VARIABLES = "PORTAILDF_USERNAME / PORTAILDF_PASSWORD"
AUTH_VERSIONS = ("v1", "v2")
LOOKUP_PATH = "utilisateurs"
MAX_PAGES = 100  # 5,000 records for one email: far beyond any real lookup, so something is wrong
PAGES = PageNumberPaginator(items="results", next="next", number_first_page=False, max_pages=MAX_PAGES)
LOGIN_PATHS = {"v1": "api-token-auth/", "v2": "token/"}
REFRESH_PATH = "token/refresh/"


class PortailDfAnswerError(ApiError):
    """A lookup answered, but not in the shape of the API (wrong status, no ``results`` list, ...)."""


def portaildf_auth(auth_version: str, username: str, password: str) -> LoginAuth:
    """The login strategy for ``auth_version``: v1's static token after a form login, or v2's JWT pair."""
    if auth_version not in AUTH_VERSIONS:
        raise ConfigurationError("PORTAILDF_AUTH_VERSION", f"must be 'v1' or 'v2', got {auth_version!r}")

    async def login(api: AuthClient) -> Tokens:
        if not username or not password:
            raise ConfigurationError(CREDENTIAL_VARIABLES, "must both be set")
        path = LOGIN_PATHS[auth_version]
        credentials = {"username": username, "password": password}
        if auth_version == "v1":
            response = await api.send("POST", path, form=credentials)
        else:
            response = await api.send("POST", path, json_body=credentials)
        if response.status_code in (404, 405):
            other = "v1" if auth_version == "v2" else "v2"
            raise ConfigurationError(
                "PORTAILDF_AUTH_VERSION",
                f"the server has no {auth_version} login ({api.base_url}{path} answered "
                f"{response.status_code}); set PORTAILDF_AUTH_VERSION={other} (ZLV's CEREMA_AUTH_VERSION, v1 "
                "by default there) or check PORTAILDF_API_URL",
            )
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(SYSTEM, CREDENTIAL_VARIABLES, f"HTTP {response.status_code} on {path}")
        body = api.parse_json(response, "POST", path)
        answer = body if isinstance(body, dict) else {}
        wanted = ("token",) if auth_version == "v1" else ("access", "refresh")
        access, refresh = answer.get(wanted[0]), answer.get("refresh") if auth_version == "v2" else None
        if (
            response.status_code != 200
            or not isinstance(access, str)
            or (auth_version == "v2" and not isinstance(refresh, str))
        ):
            raise PortailDfAnswerError(
                SYSTEM, "POST", path, f"HTTP {response.status_code} without {' and '.join(wanted)}"
            )
        return Tokens(access, refresh if isinstance(refresh, str) else None)

    async def refresh(api: AuthClient, refresh_token: str) -> Tokens | None:
        """A new v2 access token; None when the refresh token no longer works (log in again)."""
        response = await api.send("POST", REFRESH_PATH, json_body={"refresh": refresh_token})
        if response.status_code != 200:
            return None
        body = api.parse_json(response, "POST", REFRESH_PATH)
        access = body.get("access") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(access, str):
            return None
        rotated = body.get("refresh")  # simplejwt with ROTATE_REFRESH_TOKENS
        return Tokens(access, rotated if isinstance(rotated, str) else None)

    return LoginAuth(
        login,
        refresh if auth_version == "v2" else None,
        scheme="Token" if auth_version == "v1" else "Bearer",
    )


class PortailDfClient:
    """Use inside ``async with`` of its ``ApiClient``, whose ``auth`` is ``portaildf_auth(...)``; call
    ``login()`` once before the lookups."""

    def __init__(self, api: ApiClient, auth: LoginAuth) -> None:
        self.api = api
        self.auth = auth

    @property
    def logins(self) -> int:
        return self.auth.logins

    @property
    def refreshes(self) -> int:
        return self.auth.refreshes

    async def login(self) -> None:
        """Obtain a token with the username and password; refused credentials stop the run at once."""
        await self.auth.login(self.api)

    async def lookup(self, email: str) -> list[JsonValue]:
        """Every record ``GET utilisateurs?email=`` returns for ``email``, following the pages.

        The email is sent trimmed of surrounding spaces, its case kept as ZLV stores it (URL-encoded), as ZLV's
        own app and the seed send it: were Portail DF's filter exact, a lower-cased copy would miss every address
        stored with a capital, and an address stored with a trailing space would match nothing. The records are
        then matched to the user trimmed and case-insensitively (see mapping): a record whose email merely
        contains this one is returned by the filter too, and is not taken. Pages are asked for by number, so
        a ``next`` link that comes back as ``http://`` (or broken by a redirect) is only read as "there is
        more"; a page of ``results`` alone, without ``count`` or ``next``, is the last one."""

        async def page(params: PageParams) -> JsonValue:
            response = await self.api.request("GET", LOOKUP_PATH, params=params, auth=self.auth)
            if response.status_code != 200:
                raise PortailDfAnswerError(
                    SYSTEM, "GET", LOOKUP_PATH, self.api.error_message(response), status=response.status_code
                )
            return self.api.parse_json(response, "GET", LOOKUP_PATH)

        return await collect(
            PAGES,
            page,
            {"email": email.strip()},
            error=lambda message: PortailDfAnswerError(SYSTEM, "GET", LOOKUP_PATH, message),
        )
