"""How the HTTP client and an authentication strategy see each other, and nothing more.

``core.auth``'s strategies obtain, renew and refuse credentials; ``core.http``'s ``ApiClient`` sends requests and
runs the "refused: renew once and resend" loop. Each knows the other only through these two interfaces (as
httpx's ``Auth`` knows no client): ``AuthClient`` is the client as a strategy sees it, ``Authenticator`` the
strategy as the client sees it, so neither module imports the other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

import httpx

from sync_pipelines.core.json_value import JsonInput, JsonValue
from sync_pipelines.core.transport import QueryParams


class AuthClient(Protocol):
    """The client as a strategy uses it: who it speaks to (for messages), where its log goes, and its redactor,
    which must learn every token a strategy obtains so that no log line, metadata or error shows it."""

    system: str
    base_url: str
    # The settings that hold the credential, named by the error for a refusal renewing did not fix.
    credential_variables: str
    log: logging.Logger

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json_body: JsonInput = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """One request without the credential (a login or refresh grant); its answer, refusals included."""
        ...

    def parse_json(self, response: httpx.Response, method: str, path: str) -> JsonValue:
        """The answer's body as JSON, or the client's error for a malformed one."""
        ...

    def redact(self, text: object) -> str:
        """``text`` with every secret the client knows masked."""
        ...

    def add_secret(self, secret: str | None) -> None:
        """Mask ``secret`` too from now on (a token learnt at run time)."""
        ...


class Authenticator(Protocol):
    """A credential strategy as the client uses it (``core.auth.Auth`` and its kinds)."""

    @property
    def generation(self) -> int:
        """How many credentials were obtained so far: requests refused the same one share one renewal."""
        ...

    @property
    def ready(self) -> bool:
        """Whether a credential is held; a request made without one obtains one first."""
        ...

    @property
    def renew_statuses(self) -> frozenset[int]:
        """The refusals worth renewing the credential for (401; some servers answer 403 to an expired token)."""
        ...

    def headers(self) -> Mapping[str, str]:
        """The current credential as request headers."""
        ...

    async def renew(self, api: AuthClient, seen_generation: int) -> bool:
        """A new credential unless one was obtained since ``seen_generation``; False when none can be had."""
        ...

    def refused(self, api: AuthClient, method: str, path: str, status: int, renewed: bool) -> Exception:
        """The error for a refusal renewing did not fix."""
        ...
