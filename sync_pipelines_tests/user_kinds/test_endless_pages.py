"""A Portail DF lookup whose pages never advance (every page is the first again, with a ``next`` link) fails
that user at its second page, naming why, instead of asking ``MAX_PAGES`` pages; the other users are written, and
the user is a row error of a run that succeeds."""

from __future__ import annotations

import pytest

from sync_pipelines.defs.user_kinds.client import MAX_PAGES
from sync_pipelines_tests.harness.row_errors import errors_table, summary_line
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
    assert result.success, failure_text(result)
    assert "with 1 record error(s) (1 record(s) unusable in Portail DF's answer" in summary_line(
        result, "user_kinds"
    )
    table = errors_table(result, "user_kinds")
    assert f"| {stuck} | unusable in Portail DF's answer | lookup failed" in table
    assert "the pages do not advance" in table
    users = len(world.active_ids())
    assert world.handle.requests(LOOKUP) <= users + 1 < users + MAX_PAGES - 1
    expected = world.expected_kinds()
    after = world.kinds()
    assert {u: k for u, k in after.items() if u != stuck} == {u: k for u, k in expected.items() if u != stuck}
