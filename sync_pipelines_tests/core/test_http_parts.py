"""The HTTP layer's parts: one tree of errors under ``SyncError``, the retry policy, and auth apart from the
client (``core/errors.py``, ``core/retry.py``, ``core/auth_client.py``)."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path

import pytest

from sync_pipelines.core import errors
from sync_pipelines.core.errors import (
    ApiError,
    MalformedResponseError,
    PagingError,
    SyncError,
    TransientApiError,
    UnconfirmedError,
    UnreachableError,
)
from sync_pipelines.core.limits import ApiLimits
from sync_pipelines.core.retry import RetryPolicy
from sync_pipelines.core.transport import Transport
from sync_pipelines.defs.rt.client import RtRecordError
from sync_pipelines_tests.harness.python_source import parse_file

pytestmark = pytest.mark.unit

CORE = Path(errors.__file__).parent


def test_every_error_is_a_sync_error() -> None:
    """Whatever a client, a paginator or RT's client raises is a ``SyncError``, so it reaches an operator as one
    line."""
    raised_here = [
        value for value in vars(errors).values() if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert len(raised_here) > 10
    assert all(issubclass(kind, SyncError) for kind in [*raised_here, PagingError, RtRecordError])


def test_unconfirmed_is_not_a_kind_of_transient() -> None:
    """An unconfirmed write may have been applied: it must never look like something worth retrying."""
    assert issubclass(UnconfirmedError, ApiError)
    assert not issubclass(UnconfirmedError, TransientApiError)
    assert issubclass(UnreachableError, TransientApiError)


def test_the_retry_policy_retries_only_transient_failures_within_its_bound() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_initial_seconds=0.5, backoff_max_seconds=30.0)
    assert policy.retries(TransientApiError("X", "GET", "p", "HTTP 503", status=503))
    assert not policy.retries(UnconfirmedError("X", "PUT", "p", "no answer"))
    assert not policy.retries(MalformedResponseError("X", "GET", "p", "not JSON"))
    assert [policy.may_attempt_again(made) for made in (1, 2, 3)] == [True, True, False]
    assert [policy.retries_status(status) for status in (429, 500, 503, 400, 404)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert policy.resends_after_timeout("get", None) and not policy.resends_after_timeout("PUT", None)
    assert policy.resends_after_timeout("POST", True) and not policy.resends_after_timeout("GET", False)


def test_backoff_grows_is_bounded_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_initial_seconds=0.5, backoff_max_seconds=2.0)
    waits = [policy.backoff_seconds(failed, None) for failed in range(1, 10) for _ in range(50)]
    assert all(0 <= wait <= 2.0 for wait in waits) and max(waits) > 1.0
    told = TransientApiError("X", "GET", "p", "HTTP 429", status=429, retry_after=7.0)
    assert all(7.0 <= policy.backoff_seconds(1, told) <= 8.0 for _ in range(50))


def _imported(module: str) -> set[str]:
    """The ``sync_pipelines`` modules ``core/<module>.py`` imports, wherever in the file (functions included)."""
    tree = parse_file(CORE / f"{module}.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("sync_pipelines")}


def test_auth_and_the_http_client_know_each_other_only_through_an_interface() -> None:
    assert "sync_pipelines.core.http" not in _imported("auth")
    assert "sync_pipelines.core.auth" not in _imported("http")
    assert "sync_pipelines.core.auth_client" in _imported("auth") & _imported("http")


def test_every_transport_of_a_process_verifies_with_one_tls_context() -> None:
    """Making a TLS context loads the authorities' file (tens of ms of CPU); a run opens a client per system and
    step, so they share one, and it verifies certificates and host names."""

    async def context() -> ssl.SSLContext:
        async with Transport("https://127.0.0.1:1/", ApiLimits(), lambda size: False) as transport:
            return transport._opened()._transport.ssl_context  # type: ignore[attr-defined,no-any-return]

    first, second = asyncio.run(context()), asyncio.run(context())
    assert first is second
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname
