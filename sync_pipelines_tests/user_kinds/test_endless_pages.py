"""A Portail DF lookup whose pages never advance (every page is the first again, with a ``next`` link) fails
that user at its second page, naming why, instead of asking ``MAX_PAGES`` pages; the other users are written."""

from __future__ import annotations

import pytest

from sync_pipelines.defs.user_kinds.client import MAX_PAGES
from sync_pipelines_tests.user_kinds.conftest import LOOKUP, ZlvWorld
from sync_pipelines_tests.user_kinds.test_user_kinds_failures import email_of, found_users
from sync_pipelines_tests.user_kinds.test_user_kinds_sync import failure_text

pytestmark = pytest.mark.integration


def test_a_lookup_whose_pages_never_advance_fails_that_user_at_the_second_page(world_v2: ZlvWorld) -> None:
    world = world_v2
    [stuck] = found_users(world, 1)
    world.handle.change_state({"action": "endless_pages_for_email", "email": email_of(world, stuck)})
    world.handle.reset_counters()
    result = world.run()
    assert not result.success
    message = failure_text(result)
    assert "1 record(s) could not be written to user_kinds" in message
    assert f"{stuck}: lookup failed" in message and "the pages do not advance" in message
    users = len(world.active_ids())
    assert world.handle.requests(LOOKUP) <= users + 1 < users + MAX_PAGES - 1
    expected = world.expected_kinds()
    after = world.kinds()
    assert {u: k for u, k in after.items() if u != stuck} == {u: k for u, k in expected.items() if u != stuck}
