"""The shared paginator on canned pages: RT's and Portail DF's page shapes, the end of the pages, the bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sync_pipelines.core.errors import PagingError
from sync_pipelines.core.paging import PageNumberPaginator, collect, iterate_pages

pytestmark = pytest.mark.unit

RT_PAGES = PageNumberPaginator(
    items="items", next="next_page", page_size=("per_page", 100), items_required=False
)
DRF_PAGES = PageNumberPaginator(items="results", next="next", number_first_page=False, max_pages=3)


class Pages:
    """Answers page n with ``pages[n - 1]`` and records the parameters each request was sent with."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages
        self.asked: list[dict[str, Any]] = []

    async def __call__(self, params: dict[str, Any]) -> Any:
        self.asked.append(params)
        return self.pages[int(params.get("page", 1)) - 1]


def test_rt_pages_are_numbered_from_one_and_followed_to_the_last() -> None:
    fetch = Pages(
        [
            {"items": [1, 2], "next_page": "https://rt/customfields?page=2"},
            {"items": [3], "next_page": "https://rt/customfields?page=3"},
            {"items": [4]},
        ]
    )
    assert asyncio.run(collect(RT_PAGES, fetch, {"fields": "Name"})) == [1, 2, 3, 4]
    assert fetch.asked == [{"fields": "Name", "page": n, "per_page": 100} for n in (1, 2, 3)]


def test_portaildf_pages_omit_the_first_page_number_and_stop_at_a_null_next() -> None:
    fetch = Pages(
        [{"results": ["a"], "next": "https://p/utilisateurs?page=2"}, {"results": ["b"], "next": None}]
    )
    assert asyncio.run(collect(DRF_PAGES, fetch, {"email": "x@y.fr"})) == ["a", "b"]
    assert fetch.asked == [{"email": "x@y.fr"}, {"email": "x@y.fr", "page": 2}]


def test_an_empty_page_ends_the_pages_even_with_a_next_link() -> None:
    fetch = Pages([{"results": [], "next": "https://p/utilisateurs?page=2"}])
    assert asyncio.run(collect(DRF_PAGES, fetch)) == []
    assert len(fetch.asked) == 1


def test_passing_the_bound_is_an_error_naming_it() -> None:
    endless = Pages([{"results": [n], "next": "more"} for n in range(10)])
    with pytest.raises(PagingError, match=r"more than 3 pages .*max_pages=3"):
        asyncio.run(collect(DRF_PAGES, endless))
    assert len(endless.asked) == 3


def test_the_callers_error_type_is_raised() -> None:
    class AnswerError(Exception):
        pass

    fetch = Pages([{"detail": "oops"}])
    with pytest.raises(AnswerError, match="answer has no 'results' list"):
        asyncio.run(collect(DRF_PAGES, fetch, error=AnswerError))


def test_a_missing_list_is_an_empty_last_page_when_allowed() -> None:
    assert asyncio.run(collect(RT_PAGES, Pages([{"total": 0}]))) == []
    with pytest.raises(PagingError):
        asyncio.run(collect(RT_PAGES, Pages([["not", "a", "page"]])))


def test_pages_can_be_read_one_at_a_time() -> None:
    fetch = Pages([{"results": [1, 2], "next": "more"}, {"results": [3]}])

    async def read() -> list[list[Any]]:
        return [page async for page in iterate_pages(DRF_PAGES, fetch)]

    assert asyncio.run(read()) == [[1, 2], [3]]


def test_the_bound_must_allow_a_page() -> None:
    with pytest.raises(ValueError, match="max_pages"):
        PageNumberPaginator(items="results", next="next", max_pages=0)


def test_a_next_link_to_the_same_page_again_is_refused_at_once() -> None:
    """A server whose ``next`` link always points on while it answers the same items: refused at the second
    page, not after ``max_pages`` requests."""
    same = {"results": ["a", "b"], "next": "https://p/utilisateurs?page=2"}
    fetch = Pages([same] * 100)
    paginator = PageNumberPaginator(items="results", next="next", number_first_page=False, max_pages=100)
    with pytest.raises(PagingError, match="page 2 holds the same items as page 1"):
        asyncio.run(collect(paginator, fetch))
    assert len(fetch.asked) == 2


def test_an_answer_naming_a_page_already_read_is_refused() -> None:
    fetch = Pages(
        [
            {"items": [1], "page": 1, "next_page": "x"},
            {"items": [2], "page": 2, "next_page": "x"},
            {"items": [3], "page": 2, "next_page": "x"},
        ]
    )
    with pytest.raises(PagingError, match="page 3 answered as page 2 again"):
        asyncio.run(collect(RT_PAGES, fetch))
