"""A PUT whose answer is lost (the connection dropped) or is a 5xx is sent again only after reading what RT holds
for that user, never blindly, neither by the HTTP layer's retries nor by the transport's own; the run's summary
counts the resends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_pipelines_tests.harness.world import failure_messages
from sync_pipelines_tests.rt.test_rt_sync import GET, PUT, RtWorld, observation, rt_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    with rt_world(make_pg_url, monkeypatch) as world:
        yield world


def test_a_put_answered_5xx_or_dropped_is_resent_only_after_reading_the_user(world: RtWorld) -> None:
    differing = world.differing()
    world.rt.set_knobs(error_rate=0.15, drop_rate=0.05, seed=3)
    world.rt.reset_counters()
    result = world.run()
    assert result.success, failure_messages(result)
    assert world.differing() == set()
    statuses = world.rt.stats()["statuses"]
    assert sum(statuses.get(s, 0) for s in ("500", "502", "503", "dropped")) > 0
    # Each PUT beyond one per user followed a read of that user, and is counted in the run's summary.
    resent = world.rt.requests(PUT) - len(differing)
    assert 0 < resent <= world.rt.requests(GET)
    assert observation(result)["writes_resent"].value == resent
