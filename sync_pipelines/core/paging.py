"""Numbered pages, followed to the end with a bound: one paginator for every API that pages its answers.

RT REST2 answers ``{"items": [...], "page", "per_page", "next_page"}`` and Portail DF (Django REST framework)
``{"results": [...], "next"}``; both are asked for page *n* with a ``page`` parameter. The paginator is an object
of its own, as in dlt's ``rest_client``, so a client says *how* its API pages and ``collect`` does the
following: ask page 1, 2, ... until the answer has no next link or no items.

A page bound stops a server that always links a next page (or a query that matches far more than it should)
from keeping a run busy forever: passing it is an error that names the bound. A page that does not advance (the
answer names a page number already read, or holds the very items of a page already read, as a server whose
``next`` link points back at the same page does) is an error at once, rather than the bound's worth of requests
later (``PageProgress``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_pipelines.core.errors import PagingError

FetchPage = Callable[[dict[str, Any]], Awaitable[Any]]
PageError = Callable[[str], Exception]


@dataclass(frozen=True)
class PageNumberPaginator:
    """How an API numbers its pages.

    ``items`` and ``next`` name the answer's list and next-page link; ``page_param`` the page number parameter,
    sent for page 1 too unless ``number_first_page`` is false. ``page_size`` (parameter, size) asks for big
    pages. ``items_required``: an answer without the list is an error (else: an empty, last page).
    """

    items: str
    next: str
    page_param: str = "page"
    number_first_page: bool = True
    page_size: tuple[str, int] | None = None
    max_pages: int = 100
    items_required: bool = True

    def __post_init__(self) -> None:
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")

    def params(self, page: int, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Query parameters for page ``page`` (from 1), on top of ``base``."""
        params = dict(base or {})
        if page > 1 or self.number_first_page:
            params[self.page_param] = page
        if self.page_size is not None:
            params[self.page_size[0]] = self.page_size[1]
        return params

    def page_items(self, body: Any) -> list[Any] | None:
        """The page's items; ``None`` when the answer is not a page."""
        if not isinstance(body, Mapping):
            return None
        items = body.get(self.items)
        if items is None and not self.items_required:
            return []
        return items if isinstance(items, list) else None

    def has_next(self, body: Mapping[str, Any], items: list[Any]) -> bool:
        return bool(body.get(self.next)) and bool(items)


class PageProgress:
    """The pages read so far, to tell a page that does not advance: one whose own ``page`` number was read
    already, or whose items are exactly those of a page read already."""

    def __init__(self) -> None:
        self._numbers: dict[int, int] = {}  # page number an answer gave -> the page it answered
        self._contents: dict[str, int] = {}  # the items' digest -> the page that held them

    def repeats(self, asked: int, items: list[Any], number: Any = None) -> str | None:
        """Why page ``asked`` (its ``items``, the ``page`` number its answer gave) does not advance, or None."""
        if isinstance(number, int) and not isinstance(number, bool):
            if number in self._numbers:
                return f"page {asked} answered as page {number} again"
            self._numbers[number] = asked
        if items:
            digest = hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()
            if digest in self._contents:
                return f"page {asked} holds the same items as page {self._contents[digest]}"
            self._contents[digest] = asked
        return None


async def iterate_pages(
    paginator: PageNumberPaginator,
    fetch: FetchPage,
    params: Mapping[str, Any] | None = None,
    error: PageError = PagingError,
) -> AsyncIterator[list[Any]]:
    """Each page's items in order. ``fetch(params)`` asks for one page and returns its parsed answer (having
    dealt with statuses itself); ``error(message)`` builds the exception for a bad page or the bound passed."""
    progress = PageProgress()
    for page in range(1, paginator.max_pages + 1):
        body = await fetch(paginator.params(page, params))
        items = paginator.page_items(body)
        if items is None:
            raise error(f"answer has no '{paginator.items}' list")
        stalled = progress.repeats(page, items, body.get(paginator.page_param))
        if stalled is not None:
            raise error(f"the pages do not advance ({stalled}): the server's paging is broken")
        yield items
        if not paginator.has_next(body, items):
            return
    raise error(f"more than {paginator.max_pages} pages of results (max_pages={paginator.max_pages})")


async def collect(
    paginator: PageNumberPaginator,
    fetch: FetchPage,
    params: Mapping[str, Any] | None = None,
    error: PageError = PagingError,
) -> list[Any]:
    """Every item of every page, in order (see ``iterate_pages``)."""
    items: list[Any] = []
    async for page in iterate_pages(paginator, fetch, params, error):
        items.extend(page)
    return items
