"""Request Tracker as a resource: where it is, how to authenticate, which fields, and how hard to drive it."""

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from sync_pipelines.core.auth import StaticToken
from sync_pipelines.core.env import env_text
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.http import ApiClient
from sync_pipelines.core.settings import api_limits
from sync_pipelines.defs.rt.client import RequestTrackerClient
from sync_pipelines.defs.shared.resource_bundle import ResourceBundle
from sync_pipelines.defs.shared.setting_origin import setting_origin

GRADE_VALUES = ("grade", "graduation_year")
DEFAULT_CONCURRENCY = 8  # a ceiling: below it the number in flight follows RT's answers


class RequestTrackerResource(dg.ConfigurableResource):
    """RT REST2 at ``RT_URL`` (``/REST/2.0/`` is appended) with ``Authorization: token RT_TOKEN``.

    ``requests_per_second=1`` is the old script's ``--rate-limit 1.0``. Unset settings fall back to the
    environment (``RT_MAX_CONCURRENCY``, ``RT_REQUESTS_PER_SECOND``, ``RT_GRADE_FIELD``, ...).

    RT checks the token with bcrypt on every request (~0.2-0.4 s of its CPU) and closes the connection after each
    answer, so requests beyond its workers queue inside RT: at most 8 in flight (``RT_MAX_CONCURRENCY``), fewer
    as soon as RT's answers slow down, and a 60 s timeout keep a busy RT from timing out requests it is still
    working on (and from doing them twice when they are resent).
    """

    url: str = Field(description="RT base URL, e.g. https://rt.example.org")
    token: str = Field(description="RT auth token (RT::Authen::Token)")
    grade_field: str | None = Field(default=None, description="unset: RT_GRADE_FIELD, else 'Grade'")
    student_id_field: str | None = Field(
        default=None, description="unset: RT_STUDENT_ID_FIELD, else 'Student ID'"
    )
    grade_value: str | None = Field(
        default=None, description="'grade' or 'graduation_year'; unset: RT_GRADE_VALUE, else 'grade'"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="ceiling of requests in flight; unset: RT_MAX_CONCURRENCY or 8"
    )
    requests_per_second: float | None = Field(
        default=None, gt=0, description="unset: RT_REQUESTS_PER_SECOND or no cap"
    )
    timeout_seconds: float = 60.0
    max_attempts: int = Field(default=5, ge=1)

    def fields(self) -> tuple[str, str]:
        return (
            self.grade_field or env_text("RT_GRADE_FIELD", "Grade"),
            self.student_id_field or env_text("RT_STUDENT_ID_FIELD", "Student ID"),
        )

    def grade_mode(self) -> str:
        mode = self.grade_value or env_text("RT_GRADE_VALUE", "grade")
        if mode not in GRADE_VALUES:
            raise ConfigurationError("RT_GRADE_VALUE", f"must be 'grade' or 'graduation_year', got {mode!r}")
        return mode

    @contextlib.asynccontextmanager
    async def client(self, log: logging.Logger | None = None) -> AsyncIterator[RequestTrackerClient]:
        limits = api_limits(
            "RT",
            self.max_concurrency,
            self.requests_per_second,
            self.timeout_seconds,
            self.max_attempts,
            default_concurrency=DEFAULT_CONCURRENCY,
        )
        api = ApiClient(
            "RT",
            self.url.rstrip("/") + "/REST/2.0/",
            limits,
            credential_variables="RT_TOKEN (and RT_URL)",
            secrets=[self.token],
            headers={"Content-Type": "application/json"},
            url_variable=setting_origin("RT_URL", self.url, "request_tracker", "url"),
            logger=log,
            auth=StaticToken(self.token, scheme="token"),
        )
        async with api:
            yield RequestTrackerClient(api)


@dataclass(frozen=True)
class RtResources(ResourceBundle):
    """The RT sync's resources: RT (the students table is its upstream's)."""

    request_tracker: RequestTrackerResource
