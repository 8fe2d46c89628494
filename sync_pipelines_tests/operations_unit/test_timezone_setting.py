"""A misspelled ``SYNC_TIMEZONE`` stops the code location's load in one line naming ``SYNC_TIMEZONE``, whichever
systems are enabled, not as an invalid timezone of the first schedule that uses it."""

from __future__ import annotations

import os

import pytest

from sync_pipelines_tests.harness.code_location import load_code_location

pytestmark = pytest.mark.integration


def test_the_code_location_refuses_a_misspelled_timezone_naming_it() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("RT_", "BAKALARI_", "EDURPG_", "PORTAILDF_", "ZLV_", "SYNC_"))
    }
    env["SYNC_TIMEZONE"] = "Europe/Pragu"
    loaded = load_code_location(env)
    assert loaded.returncode != 0
    last = loaded.stderr.strip().splitlines()[-1]
    assert "SYNC_TIMEZONE: 'Europe/Pragu' is not a timezone name" in last, loaded.stderr[-2000:]
    assert "bakalari_sync_every_15_minutes" not in last
