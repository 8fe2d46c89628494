"""Which Bakaláři credential EduRPG stored: an access token (a JWT, its ``exp`` read unverified) or a refresh token."""

from __future__ import annotations

import time

import pytest

from devkit.sandbox.bakalari import make_jwt
from sync_pipelines.defs.bakalari.stored_token import ACCESS, REFRESH, classify

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def test_a_jwt_is_an_access_token_with_its_expiry() -> None:
    now = time.time()
    token = make_jwt({"sub": "U1", "bak:UserId": "1234/U1", "exp": int(now) + 3599}, KEY)
    stored = classify(token)
    assert (stored.kind, stored.expires_at, stored.account_id) == (ACCESS, int(now) + 3599, "1234/U1")
    assert not stored.expired(now)
    assert stored.expired(now + 3600) and stored.expired_for(now + 3600 + 3 * 3600) == "3 h 0 min"
    assert stored.expired(now + 3599 - 10)  # too close to its end to be worth the reads


def test_a_jwt_without_exp_is_an_access_token_that_never_looks_expired() -> None:
    stored = classify(make_jwt({"sub": "U1"}, KEY))
    assert stored.kind == ACCESS and stored.expires_at is None and not stored.expired()


@pytest.mark.parametrize(
    "token", ["bak-rt-abcdef", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..sig", "", None, "x" * 500, "not.base64!.x"]
)
def test_anything_else_is_a_refresh_token(token) -> None:
    stored = classify(token)
    assert stored.kind == REFRESH and not stored.expired()


@pytest.mark.parametrize("exp", [10**400, float("-inf"), float("inf"), float("nan"), "9" * 5000, 10**16])
def test_an_exp_that_is_no_time_is_read_as_none(exp) -> None:
    """An ``exp`` of 400 digits or ``Infinity`` would raise where it is converted or subtracted: it is no expiry."""
    stored = classify(make_jwt({"sub": "U1", "exp": exp}, KEY))
    assert (stored.kind, stored.expires_at) == (ACCESS, None) and not stored.expired()
