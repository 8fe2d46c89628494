"""RT's user pages read with a bound, whatever RT answers: a paging that never advances (the same page again,
``pages: null``, a ``next_page`` link every time) and a page count that falls short of the pages there are (users
created while they are read). Either way the users the pages did not show are read one by one and the run
writes what it should."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_pipelines_tests.harness.row_errors import errors_table
from sync_pipelines_tests.harness.world import failure_messages
from sync_pipelines_tests.rt.test_rt_sync import PAGES, RtWorld, rt_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(make_pg_url, monkeypatch: pytest.MonkeyPatch) -> Iterator[RtWorld]:
    # Without a bound an endless paging runs into the client's deadline: short here, so a test fails, not hangs.
    monkeypatch.setenv("RT_DEADLINE_SECONDS", "60")
    with rt_world(make_pg_url, monkeypatch, size=450) as world:
        yield world


def test_pages_that_never_advance_stop_at_the_second_and_the_users_are_read_one_by_one(
    world: RtWorld,
) -> None:
    assert world.differing()
    world.rt.change_state({"action": "server", "users_paging": "stuck"})
    world.rt.reset_counters()
    result = world.run()
    assert result.success, failure_messages(result)
    assert world.differing() == set()
    # The one-user read of the applied fields, page 1, then the window of pages that showed page 1 again: no
    # page past the first window.
    assert world.rt.requests(PAGES) <= 1 + 1 + 4 + 1


def test_more_pages_than_rt_first_counted_end_the_pages_rather_than_the_run(world: RtWorld) -> None:
    # The student whose RT user has the highest id is disabled: the pages never reach it, so reading goes on
    # past the pages RT counted.
    highest = max(s.rt_user_id for s in world.students if s.rt_user_id is not None)
    world.rt.change_state({"action": "set_user", "user_id": highest, "Disabled": 1})
    world.rt.change_state({"action": "server", "users_paging": "undercounted"})
    result = world.run()
    messages = failure_messages(result)
    assert not any("IndexError" in message or "range object" in message for message in messages), messages
    # Everyone but the disabled user is written; the disabled one fails alone, naming itself: a row error of a
    # run that succeeds.
    assert result.success, messages
    assert world.differing() <= {highest}
    assert f"RT user {highest} is disabled" in errors_table(result, "rt_user_custom_fields")
