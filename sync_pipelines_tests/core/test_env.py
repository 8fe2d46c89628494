"""Settings from the environment: defaults when unset, and one sentence naming the variable when wrong."""

from __future__ import annotations

import pytest

from sync_pipelines.core.env import env_flag, env_number, env_text
from sync_pipelines.core.errors import ConfigurationError

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
        ("1.5", {"kind": int}, "SYNC_X: must be a number, got '1.5'"),
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
