"""``<SYSTEM>_ADAPTIVE_CONCURRENCY`` and ``<SYSTEM>_MAX_CONCURRENCY`` as the ceiling."""

from __future__ import annotations

import pytest

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.settings import api_limits

pytestmark = pytest.mark.unit


def limits(**kwargs: object):
    return api_limits("RT", None, None, 10.0, 3, **kwargs)


def test_adaptive_by_default_with_the_setting_as_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RT_ADAPTIVE_CONCURRENCY", raising=False)
    monkeypatch.setenv("RT_MAX_CONCURRENCY", "12")
    chosen = limits()
    assert chosen.adaptive_concurrency is True and chosen.max_concurrency == 12


@pytest.mark.parametrize(("raw", "adaptive"), [("false", False), ("0", False), ("Off", False), ("yes", True)])
def test_the_adaptive_limit_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, raw: str, adaptive: bool
) -> None:
    monkeypatch.setenv("RT_ADAPTIVE_CONCURRENCY", raw)
    assert limits().adaptive_concurrency is adaptive


def test_a_flag_that_is_no_yes_or_no_names_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_ADAPTIVE_CONCURRENCY", "maybe")
    with pytest.raises(ConfigurationError, match="RT_ADAPTIVE_CONCURRENCY"):
        limits()
