"""Settings from the environment: defaults when unset, and one sentence naming the variable when wrong."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipelines.core.database import timeout_setting
from sync_pipelines.core.env import env_flag, env_number, env_text, env_timezone
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.settings import api_limits
from sync_pipelines.sync.lease import lease_wait_seconds
from sync_pipelines.sync.replay import plan_max_age

pytestmark = pytest.mark.unit


def test_unset_or_blank_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_X", "  ")
    assert env_text("SYNC_X", "d") == "d"
    assert env_flag("SYNC_X", True) is True
    assert env_number("SYNC_X", 2.5, minimum=0) == 2.5
    assert env_number("SYNC_UNSET_X") is None


def test_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_X", " Off ")
    assert env_flag("SYNC_X", True) is False
    monkeypatch.setenv("SYNC_X", "7")
    assert env_number("SYNC_X", kind=int, minimum=1) == 7


@pytest.mark.parametrize(
    ("raw", "options", "message"),
    [
        ("soon", {"unit": "seconds"}, "SYNC_X: must be a number of seconds, got 'soon'"),
        ("1.5", {"kind": int}, "SYNC_X: must be a whole number, got '1.5'"),
        ("9" * 5000, {"kind": int}, f"SYNC_X: must be a whole number, got {'9' * 40!r}... (5000 characters)"),
        ("1e3", {"kind": int, "unit": "days"}, "SYNC_X: must be a whole number of days, got '1e3'"),
        ("0", {"kind": int, "minimum": 1, "unit": "days"}, "SYNC_X: must be at least 1 day, got '0'"),
        ("36501", {"maximum": 36500, "unit": "days"}, "SYNC_X: must be at most 36500 days, got '36501'"),
        ("2147484", {"maximum": 2_147_483}, "SYNC_X: must be at most 2147483, got '2147484'"),
        ("-1", {"minimum": 0, "unit": "seconds"}, "SYNC_X: must be at least 0 seconds, got '-1'"),
        ("0", {"above": 0, "unit": "hours"}, "SYNC_X: must be more than 0 hours, got '0'"),
    ],
)
def test_a_wrong_number_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, options: dict, message: str
) -> None:
    monkeypatch.setenv("SYNC_X", raw)
    with pytest.raises(ConfigurationError) as raised:
        env_number("SYNC_X", **options)
    assert str(raised.value) == message


def test_a_wrong_flag_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_X", "maybe")
    with pytest.raises(ConfigurationError, match="^SYNC_X: must be true or false, got 'maybe'$"):
        env_flag("SYNC_X", False)


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999"])
@pytest.mark.parametrize(
    ("variable", "read"),
    [
        ("RT_REQUESTS_PER_SECOND", lambda: api_limits("RT", None, None, 30.0, 5)),
        ("RT_DEADLINE_SECONDS", lambda: api_limits("RT", None, None, 30.0, 5)),
        ("SYNC_PLAN_MAX_AGE_HOURS", plan_max_age),
        ("SYNC_LOCK_TIMEOUT_SECONDS", lambda: timeout_setting("SYNC_LOCK_TIMEOUT_SECONDS")),
        ("SYNC_LEASE_WAIT_SECONDS", lease_wait_seconds),
    ],
)
def test_nan_and_infinities_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, read: Any, raw: str
) -> None:
    """A NaN passes every comparison with a bound: ``RT_REQUESTS_PER_SECOND=nan`` spun the run at its first
    request, ``SYNC_PLAN_MAX_AGE_HOURS=nan`` failed with a bare ValueError."""
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigurationError, match=f"^{variable}: must be a finite number") as refused:
        read()
    assert refused.value.setting == variable


def test_a_negative_number_is_refused_when_no_bound_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_X", "-3")
    with pytest.raises(ConfigurationError, match="SYNC_X: must be at least 0, got '-3'"):
        env_number("SYNC_X")


def test_a_misspelled_timezone_names_sync_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TIMEZONE", "Europe/Pragu")
    with pytest.raises(ConfigurationError) as refused:
        env_timezone()
    assert str(refused.value).startswith("SYNC_TIMEZONE: 'Europe/Pragu' is not a timezone name")
    monkeypatch.setenv("SYNC_TIMEZONE", "Europe/Prague")
    assert env_timezone() == "Europe/Prague"
