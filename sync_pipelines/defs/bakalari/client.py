"""A small typed async client for the Bakaláři API v3 calls the sync makes, on the shared HTTP layer.

It knows the protocol (form login, refresh grant, bearer calls, the error shapes) and nothing about whose account
a token belongs to: which credential a call is made with (an ``Auth`` strategy), where rotated tokens are stored
and when to give up on an account is ``accounts.py``'s job; renewing a refused token is the HTTP layer's.
"""

from __future__ import annotations

from typing import Any

from sync_pipelines.core.auth import Auth, Tokens
from sync_pipelines.core.errors import ApiError
from sync_pipelines.core.http import AUTH_STATUSES, ApiClient

CLIENT_ID = "ANDR"
LOGIN_PATH = "api/login"
# A refresh grant rotates the token on the server: if its answer is given up on, the new token is lost with it
# and the student must log in to EduRPG again. Waiting long for that one answer is far cheaper.
LOGIN_TIMEOUT_SECONDS = 60.0


__all__ = ["BakalariClient", "LoginRefused", "Tokens"]


class LoginRefused(Exception):
    """``POST /api/login`` answered 400 (``invalid_grant``: bad password, or a refresh token that no longer works)."""

    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}" if description else error)


class BakalariClient:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def login_with_password(self, username: str, password: str) -> Tokens:
        return await self._login({"grant_type": "password", "username": username, "password": password})

    async def login_with_refresh_token(self, refresh_token: str) -> Tokens:
        """Refresh grant. The server rotates the token: the old one stops working once this succeeds."""
        return await self._login({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _login(self, form: dict[str, str]) -> Tokens:
        response = await self.api.send(
            "POST",
            LOGIN_PATH,
            form={"client_id": CLIENT_ID, **form},
            timeout_seconds=max(self.api.limits.timeout_seconds, LOGIN_TIMEOUT_SECONDS),
        )
        if response.status_code in (400, *AUTH_STATUSES):
            try:
                body = self.api.parse_json(response, "POST", LOGIN_PATH)
            except ApiError:
                body = {}
            body = body if isinstance(body, dict) else {}
            # The server's words go through the redactor before they are cut (``excerpt``): a body may echo
            # the refresh token that was just sent (and any e-mail or value it was sent is masked already).
            raise LoginRefused(
                self.api.excerpt(body.get("error") or f"HTTP {response.status_code}", 80),
                self.api.excerpt(body.get("error_description") or ""),
            )
        if response.status_code != 200:
            raise ApiError(
                "Bakaláři", "POST", LOGIN_PATH, f"HTTP {response.status_code}", response.status_code
            )
        body = self.api.parse_json(response, "POST", LOGIN_PATH)
        answer = body if isinstance(body, dict) else {}
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            raise ApiError("Bakaláři", "POST", LOGIN_PATH, "login answer without access_token/refresh_token")
        self.api.add_secret(access)
        self.api.add_secret(refresh)
        user_id = answer.get("bak:UserId")
        return Tokens(access, refresh, str(user_id) if user_id else None)

    async def get(self, path: str, auth: Auth, params: dict[str, str] | None = None) -> Any:
        """``GET /api/3/<path>`` as ``auth``'s account; a refusal is renewed once, then is ``auth``'s error."""
        full_path = f"api/3/{path}"
        response = await self.api.request("GET", full_path, params=params, auth=auth)
        if response.status_code != 200:
            raise ApiError(
                "Bakaláři", "GET", f"/{full_path}", self.api.error_message(response), response.status_code
            )
        return self.api.parse_json(response, "GET", f"/{full_path}")
