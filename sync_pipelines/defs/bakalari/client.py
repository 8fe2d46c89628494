"""A small typed async client for the Bakaláři API v3 calls the sync makes, on the shared HTTP layer.

It knows the protocol (form login, bearer calls, the error shapes) and nothing about whose account a token
belongs to: keeping tokens, storing rotated ones and re-authenticating is ``accounts.py``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync_pipelines.core.http import AUTH_STATUSES, ApiClient, ApiError

CLIENT_ID = "ANDR"
LOGIN_PATH = "api/login"
# A refresh grant rotates the token on the server: if its answer is given up on, the new token is lost with it
# and the student must log in to EduRPG again. Waiting long for that one answer is far cheaper.
LOGIN_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Tokens:
    """What a login answers; never logged or put in metadata."""

    access_token: str
    refresh_token: str
    user_id: str | None


class LoginRefused(Exception):
    """``POST /api/login`` answered 400 (``invalid_grant``: bad password, or a refresh token that no longer works)."""

    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}" if description else error)


class AccessDenied(Exception):
    """401/403 on an API call: the access token expired or was revoked."""


class BakalariClient:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def login_with_password(self, username: str, password: str) -> Tokens:
        return await self._login({"grant_type": "password", "username": username, "password": password})

    async def login_with_refresh_token(self, refresh_token: str) -> Tokens:
        """Refresh grant. The server rotates the token: the old one stops working once this succeeds."""
        return await self._login({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _login(self, form: dict[str, str]) -> Tokens:
        response = await self.api.request(
            "POST",
            LOGIN_PATH,
            form={"client_id": CLIENT_ID, **form},
            raise_on_unauthorized=False,
            timeout_seconds=max(self.api.limits.timeout_seconds, LOGIN_TIMEOUT_SECONDS),
        )
        if response.status_code in (400, *AUTH_STATUSES):
            try:
                body = self.api.parse_json(response, "POST", LOGIN_PATH)
            except ApiError:
                body = {}
            body = body if isinstance(body, dict) else {}
            raise LoginRefused(
                str(body.get("error") or f"HTTP {response.status_code}"),
                str(body.get("error_description") or "")[:200],
            )
        if response.status_code != 200:
            raise ApiError(
                "Bakaláři", "POST", LOGIN_PATH, f"HTTP {response.status_code}", response.status_code
            )
        body = self.api.parse_json(response, "POST", LOGIN_PATH)
        access = body.get("access_token") if isinstance(body, dict) else None
        refresh = body.get("refresh_token") if isinstance(body, dict) else None
        if not access or not refresh:
            raise ApiError("Bakaláři", "POST", LOGIN_PATH, "login answer without access_token/refresh_token")
        self.api.add_secret(access)
        self.api.add_secret(refresh)
        user_id = body.get("bak:UserId")
        return Tokens(str(access), str(refresh), str(user_id) if user_id else None)

    async def get(self, path: str, access_token: str, params: dict[str, str] | None = None) -> Any:
        """``GET /api/3/<path>`` as the token's account; ``AccessDenied`` on 401/403."""
        full_path = f"api/3/{path}"
        response = await self.api.request(
            "GET",
            full_path,
            params=params,
            headers={"Authorization": f"Bearer {access_token}"},
            raise_on_unauthorized=False,
        )
        if response.status_code in AUTH_STATUSES:
            raise AccessDenied(f"HTTP {response.status_code} on /{full_path}")
        if response.status_code != 200:
            raise ApiError(
                "Bakaláři", "GET", f"/{full_path}", f"HTTP {response.status_code}", response.status_code
            )
        return self.api.parse_json(response, "GET", f"/{full_path}")
