"""Numbered pages, followed to the end with a bound: one paginator for every API that pages its answers.

RT REST2 answers ``{"items": [...], "page", "per_page", "next_page"}`` and Portail DF (Django REST framework)
``{"results": [...], "next"}``; both are asked for page *n* with a ``page`` parameter. The paginator is an object
of its own, as in dlt's ``rest_client``, so a client says *how* its API pages and ``collect`` does the
following: ask page 1, 2, ... until the answer has no next link or no items.

A page bound stops a server that always links a next page (or a query that matches far more than it should)
from keeping a run busy forever: passing it is an error that names the bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

FetchPage = Callable[[dict[str, Any]], Awaitable[Any]]
PageError = Callable[[str], Exception]


class PagingError(Exception):
    """An answer not shaped as a page, or more pages than the bound (the default error)."""


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


async def iterate_pages(
    paginator: PageNumberPaginator,
    fetch: FetchPage,
    params: Mapping[str, Any] | None = None,
    error: PageError = PagingError,
) -> AsyncIterator[list[Any]]:
    """Each page's items in order. ``fetch(params)`` asks for one page and returns its parsed answer (having
    dealt with statuses itself); ``error(message)`` builds the exception for a bad page or the bound passed."""
    for page in range(1, paginator.max_pages + 1):
        body = await fetch(paginator.params(page, params))
        items = paginator.page_items(body)
        if items is None:
            raise error(f"answer has no '{paginator.items}' list")
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
