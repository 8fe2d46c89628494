"""Portail DF and the ZLV database as resources: where they are, how to log in, how hard to drive the API."""

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from sync_pipelines.core.env import env_flag, env_text
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.http import ApiClient
from sync_pipelines.core.settings import api_limits
from sync_pipelines.defs.shared.resource_bundle import ResourceBundle
from sync_pipelines.defs.shared.setting_origin import setting_origin
from sync_pipelines.defs.user_kinds.client import (
    AUTH_VERSIONS,
    CREDENTIAL_VARIABLES,
    PortailDfClient,
    portaildf_auth,
)
from sync_pipelines.defs.user_kinds.database import ZlvUsers


def api_base_url(url: str) -> str:
    """The API's base, ending with ``/api``: ZLV writes its ``CEREMA_API`` without it
    (``https://getdf.cerema.fr``), the seed with it; either, with or without a trailing slash, is accepted."""
    base = url.strip().rstrip("/")
    return base if base.endswith("/api") else f"{base}/api"


class PortailDfResource(dg.ConfigurableResource):
    """The Portail DF API at ``PORTAILDF_API_URL`` (``https://getdf.cerema.fr`` or ``.../api``).

    Unset settings fall back to the environment: ``PORTAILDF_AUTH_VERSION`` (``v1`` or ``v2``, default ``v2``),
    ``PORTAILDF_MAX_CONCURRENCY`` (default 8) and ``PORTAILDF_REQUESTS_PER_SECOND`` (default: no cap).
    """

    api_url: str = Field(description="Portail DF API base URL, with or without the trailing /api")
    username: str = Field(description="Portail DF account name")
    password: str = Field(description="Portail DF account password")
    auth_version: str | None = Field(
        default=None, description="'v1' (token) or 'v2' (JWT); unset: PORTAILDF_AUTH_VERSION, else 'v2'"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="lookups in flight; unset: PORTAILDF_MAX_CONCURRENCY or 8"
    )
    requests_per_second: float | None = Field(
        default=None, gt=0, description="unset: PORTAILDF_REQUESTS_PER_SECOND or no cap"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="per request, as the seed's 10 s")
    max_attempts: int = Field(default=4, ge=1, description="tries per request on timeouts, 429 and 5xx")

    def version(self) -> str:
        version = (self.auth_version or env_text("PORTAILDF_AUTH_VERSION", "v2")).strip().lower()
        if version not in AUTH_VERSIONS:
            raise ConfigurationError("PORTAILDF_AUTH_VERSION", f"must be 'v1' or 'v2', got {version!r}")
        return version

    @contextlib.asynccontextmanager
    async def client(self, log: logging.Logger | None = None) -> AsyncIterator[PortailDfClient]:
        """A logged-in client; wrong credentials raise ``AuthenticationError`` before any lookup."""
        if not self.api_url or not self.api_url.strip():
            raise ConfigurationError("PORTAILDF_API_URL", "is not set")
        limits = api_limits(
            "PORTAILDF",
            self.max_concurrency,
            self.requests_per_second,
            self.timeout_seconds,
            self.max_attempts,
        )
        auth = portaildf_auth(self.version(), self.username, self.password)
        api = ApiClient(
            "Portail DF",
            api_base_url(self.api_url),
            limits,
            credential_variables=CREDENTIAL_VARIABLES,
            secrets=[self.password],
            headers={"Accept": "application/json"},
            url_variable=setting_origin("PORTAILDF_API_URL", self.api_url, "portaildf", "api_url"),
            logger=log,
            auth=auth,
        )
        async with api:
            portaildf = PortailDfClient(api, auth)
            await portaildf.login()
            yield portaildf


class ZlvDatabase(dg.ConfigurableResource):
    """ZLV's PostgreSQL database (``ZLV_DATABASE_URL``), table ``users``: read ``id``, ``email``, ``deleted_at``
    and ``kind``; write ``kind`` (and ``updated_at = now()`` with it, unless ``set_updated_at`` is false).

    Deleted users (``deleted_at`` set) are left out unless ``include_deleted`` (or ``ZLV_INCLUDE_DELETED_USERS``)
    is true; the seed did include them.
    """

    database_url: str = Field(description="SQLAlchemy URL of the ZLV database; postgresql://... is accepted")
    table: str = "users"
    include_deleted: bool | None = Field(
        default=None, description="sync deleted users too; unset: ZLV_INCLUDE_DELETED_USERS, else false"
    )
    set_updated_at: bool | None = Field(
        default=None,
        description="a kind write sets updated_at = now() too, as ZLV's app does; unset: ZLV_SET_UPDATED_AT, "
        "else true",
    )

    kind_when_not_found: str | None = Field(
        default=None,
        description="'keep' (the seed's rule) or 'clear' (NULL, as ZLV's login hook writes); unset: "
        "ZLV_KIND_WHEN_NOT_FOUND, else 'keep'",
    )

    def clears_not_found(self) -> bool:
        """Whether a user Portail DF does not find gets ``kind = NULL`` (``clear``) or keeps theirs (``keep``)."""
        rule = (self.kind_when_not_found or env_text("ZLV_KIND_WHEN_NOT_FOUND", "keep")).strip().lower()
        if rule not in ("keep", "clear"):
            raise ConfigurationError("ZLV_KIND_WHEN_NOT_FOUND", f"must be 'keep' or 'clear', got {rule!r}")
        return rule == "clear"

    def users(self) -> ZlvUsers:
        return ZlvUsers.from_url(self.database_url, self.table, self.sets_updated_at())

    def sets_updated_at(self) -> bool:
        if self.set_updated_at is not None:
            return self.set_updated_at
        return env_flag("ZLV_SET_UPDATED_AT", True)

    def includes_deleted(self) -> bool:
        if self.include_deleted is not None:
            return self.include_deleted
        return env_flag("ZLV_INCLUDE_DELETED_USERS", False)


@dataclass(frozen=True)
class UserKindsResources(ResourceBundle):
    """The user-kind sync's resources: Portail DF's API and ZLV's database."""

    portaildf: PortailDfResource
    zlv_database: ZlvDatabase
