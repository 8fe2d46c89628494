"""Bakaláři and EduRPG's database as resources: where they are, the credentials, how hard to drive the API."""

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import Engine

from sync_pipelines.core.database import create_database_engine, is_postgresql
from sync_pipelines.core.env import env_flag
from sync_pipelines.core.http import ApiClient
from sync_pipelines.core.settings import api_limits
from sync_pipelines.defs.bakalari.accounts import OPERATOR_VARIABLES
from sync_pipelines.defs.bakalari.client import BakalariClient
from sync_pipelines.defs.bakalari.edurpg import CREATE_EXTERNAL_REF_SETTING, SETTING, EduRpgStore
from sync_pipelines.defs.shared.resource_bundle import ResourceBundle
from sync_pipelines.defs.shared.setting_origin import setting_origin


class BakalariResource(dg.ConfigurableResource):
    """The school's Bakaláři server (``BAKALARI_URL``) and its operator (teacher) account.

    The operator logs in with the password grant (``BAKALARI_USERNAME`` / ``BAKALARI_PASSWORD``); students'
    accounts are opened with the refresh tokens kept in EduRPG. Unset limits fall back to
    ``BAKALARI_MAX_CONCURRENCY`` (default 8) and ``BAKALARI_REQUESTS_PER_SECOND`` (default: no cap).
    """

    url: str = Field(description="Bakaláři server base URL, e.g. https://bakalari.example.cz")
    username: str = Field(description="operator (teacher) account user name")
    password: str = Field(description="operator (teacher) account password")
    max_concurrency: int | None = Field(
        default=None, ge=1, description="requests in flight; unset: BAKALARI_MAX_CONCURRENCY or 8"
    )
    requests_per_second: float | None = Field(
        default=None, gt=0, description="unset: BAKALARI_REQUESTS_PER_SECOND or no cap"
    )
    timeout_seconds: float = 10.0
    max_attempts: int = Field(default=5, ge=1)

    def limits(self):
        return api_limits(
            "BAKALARI",
            self.max_concurrency,
            self.requests_per_second,
            self.timeout_seconds,
            self.max_attempts,
        )

    @contextlib.asynccontextmanager
    async def client(self, log: logging.Logger | None = None) -> AsyncIterator[BakalariClient]:
        api = ApiClient(
            "Bakaláři",
            self.url,
            self.limits(),
            credential_variables=OPERATOR_VARIABLES,
            secrets=[self.password],
            url_variable=setting_origin("BAKALARI_URL", self.url, "bakalari", "url"),
            logger=log,
        )
        async with api:
            yield BakalariClient(api)


class EduRpgDatabase(dg.ConfigurableResource):
    """EduRPG's database (``EDURPG_DATABASE_URL``, PostgreSQL with the Prisma schema; SQLite in the demo)."""

    database_url: str = Field(description="SQLAlchemy URL; postgresql://user:pass@host/db is accepted as is")
    create_external_ref: bool | None = Field(
        default=None,
        description="create EduRPG's \"ExternalRef\" table when it is missing (EduRPG's migrations never create "
        "it); unset: EDURPG_CREATE_EXTERNAL_REF (default false)",
    )

    def engine(self) -> Engine:
        return create_database_engine(self.database_url, SETTING)

    def creates_external_ref(self) -> bool:
        if self.create_external_ref is not None:
            return self.create_external_ref
        return env_flag(CREATE_EXTERNAL_REF_SETTING, False)

    def store(self, prepare: bool = False) -> EduRpgStore:
        """The store, after checking that the database holds EduRPG's tables (else one sentence naming the setting).

        ``prepare`` (the sync, not the checks): create a missing ``"ExternalRef"`` when
        ``EDURPG_CREATE_EXTERNAL_REF`` allows it."""
        return EduRpgStore(self.engine(), create_external_ref=prepare and self.creates_external_ref())

    def token_workers(self) -> int:
        """Threads committing rotated tokens: a few on PostgreSQL; one on SQLite, which has one writer anyway."""
        return 4 if is_postgresql(self.engine()) else 1


@dataclass(frozen=True)
class BakalariResources(ResourceBundle):
    """The Bakaláři sync's resources: Bakaláři's API and EduRPG's database."""

    bakalari: BakalariResource
    edurpg_database: EduRpgDatabase
