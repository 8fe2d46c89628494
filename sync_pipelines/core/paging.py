"""Paged answers, followed to the end with a bound: one paginator interface, with the kinds the APIs need.

A paginator says how an API pages (``Paginator``, as in dlt's ``rest_client``): what to send for page *n*
(``params``) and what an answer says about itself (``read``: its items, whether another page follows, the page
number it gives, how many pages there are). Two readers follow pages through that interface, whatever the kind:

* ``iterate_pages`` (and ``collect``): one page after another, until an answer has no next link or no items;
  for short listings (RT's custom fields, a Portail DF lookup);
* ``read_pages_ahead``: a few pages asked at once, for a long listing whose reader may stop early and read what
  is left another way (RT's users: a page RT refuses is left out, and the reading stops as soon as the rest
  costs RT less one user at a time).

The kinds: ``PageNumberPaginator`` asks for pages by number and reads the answer's list and next-page link by
name: RT REST2 (``{"items": [...], "page", "per_page", "next_page"}``) and Portail DF's Django REST framework
(``{"results": [...], "next"}``, whose first page has no number). RT's user listing is that kind with RT's own
reading of the page count and of "another page follows" (``defs/rt/client.py``). Bakaláři's answers are not
paged.

A page bound stops a server that always links a next page (or a query that matches far more than it should)
from keeping a run busy forever: passing it is an error that names the bound (``TooManyPages``). A page that
does not advance (the answer names a page number already read, or holds the very items of a page already read,
as a server whose ``next`` link points back at the same page does) is an error at once, rather than the bound's
worth of requests later (``PageProgress``, ``PagesDoNotAdvance``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sync_pipelines.core.errors import ApiError, PagesDoNotAdvance, PagingError, TooManyPages
from sync_pipelines.core.json_value import JsonObject, JsonValue

# A page's query parameters, and those a caller adds to every page's.
PageParams = dict[str, str | int]
FetchPage = Callable[[PageParams], Awaitable[JsonValue]]
PageError = Callable[[str], Exception]


@dataclass(frozen=True)
class Page:
    """One answer read as a page: the page asked for, its items, whether another follows, and what it says of
    itself (the page number it gives, the number of pages), when it says."""

    asked: int
    items: list[JsonValue]
    more: bool
    number: int | None = None
    count: int | None = None


PageT = TypeVar("PageT", bound=Page)


class Paginator(Protocol):
    """How an API pages its answers."""

    @property
    def items(self) -> str:
        """The name of the answer's list (named by the error for an answer that is not a page)."""
        ...

    @property
    def max_pages(self) -> int:
        """The bound: more pages than this is an error."""
        ...

    def params(self, page: int, base: Mapping[str, str | int] | None = None) -> PageParams:
        """Query parameters for page ``page`` (from 1), on top of ``base``."""
        ...

    def read(self, asked: int, body: JsonValue) -> Page | None:
        """The answer to page ``asked`` as a page; None when it is not one."""
        ...


@dataclass(frozen=True)
class PageNumberPaginator:
    """Pages asked for by number (a ``Paginator``).

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

    def params(self, page: int, base: Mapping[str, str | int] | None = None) -> PageParams:
        """Query parameters for page ``page`` (from 1), on top of ``base``."""
        params = dict(base or {})
        if page > 1 or self.number_first_page:
            params[self.page_param] = page
        if self.page_size is not None:
            params[self.page_size[0]] = self.page_size[1]
        return params

    def read(self, asked: int, body: JsonValue) -> Page | None:
        """The answer as a page: its list (``None`` when it is not a page), another page following when the
        answer has a next link and items."""
        if not isinstance(body, dict):
            return None
        items = body.get(self.items)
        if items is None and not self.items_required:
            items = []
        if not isinstance(items, list):
            return None
        number = body.get(self.page_param)
        given = number if isinstance(number, int) and not isinstance(number, bool) else None
        return Page(asked, items, self.more(body, items), given)

    def more(self, body: JsonObject, items: list[JsonValue]) -> bool:
        """Whether another page follows this one."""
        return bool(body.get(self.next)) and bool(items)


class PageProgress:
    """The pages read so far, to tell a page that does not advance: one whose own page number was read
    already, or whose items are exactly those of a page read already."""

    def __init__(self) -> None:
        self._numbers: dict[int, int] = {}  # page number an answer gave -> the page it answered
        self._contents: dict[str, int] = {}  # the items' digest -> the page that held them

    def repeats(self, page: Page) -> str | None:
        """Why ``page`` does not advance, or None."""
        if page.number is not None:
            if page.number in self._numbers:
                return f"page {page.asked} answered as page {page.number} again"
            self._numbers[page.number] = page.asked
        if page.items:
            digest = hashlib.sha256(json.dumps(page.items, sort_keys=True, default=str).encode()).hexdigest()
            if digest in self._contents:
                return f"page {page.asked} holds the same items as page {self._contents[digest]}"
            self._contents[digest] = page.asked
        return None


async def iterate_pages(
    paginator: Paginator,
    fetch: FetchPage,
    params: Mapping[str, str | int] | None = None,
    error: PageError = PagingError,
) -> AsyncIterator[list[JsonValue]]:
    """Each page's items in order. ``fetch(params)`` asks for one page and returns its parsed answer (having
    dealt with statuses itself); ``error(message)`` builds the exception for a bad page or the bound passed."""
    progress = PageProgress()
    for asked in range(1, paginator.max_pages + 1):
        page = paginator.read(asked, await fetch(paginator.params(asked, params)))
        if page is None:
            raise error(f"answer has no '{paginator.items}' list")
        stalled = progress.repeats(page)
        if stalled is not None:
            raise error(str(PagesDoNotAdvance(stalled)))
        yield page.items
        if not page.more:
            return
    raise error(str(TooManyPages(paginator.max_pages)))


async def collect(
    paginator: Paginator,
    fetch: FetchPage,
    params: Mapping[str, str | int] | None = None,
    error: PageError = PagingError,
) -> list[JsonValue]:
    """Every item of every page, in order (see ``iterate_pages``)."""
    items: list[JsonValue] = []
    async for page in iterate_pages(paginator, fetch, params, error):
        items.extend(page)
    return items


async def read_pages_ahead(
    paginator: Paginator,
    fetch: Callable[[int], Awaitable[PageT]],
    window: int,
    *,
    enough: Callable[[], bool],
    worth_reading: Callable[[int], bool],
) -> AsyncGenerator[PageT, None]:
    """Pages 1, 2, ... of a long listing in order, ``window`` of them asked at once after the first.

    ``fetch(n)`` reads page *n* through ``paginator``. The first page's error is raised; a later page whose
    ``fetch`` raises an ``ApiError`` is left out (its items are for the caller to read another way). The reading
    ends after the window that holds the last page (one with no ``more``), at the page count the first answer
    gave (pages added meanwhile are for the caller), when ``enough()`` says so (asked after the first page and
    after each window) or when ``worth_reading(pages_left)`` says the pages the first answer counted that are
    still to read are not worth it (asked before each window). A page that repeats one already read raises
    ``PagesDoNotAdvance``; more than ``max_pages`` pages, ``TooManyPages``.
    """
    progress = PageProgress()
    first = await fetch(1)
    progress.repeats(first)
    yield first
    if not first.more or enough():
        return
    asked = 2
    while asked <= paginator.max_pages:
        left = (first.count - asked + 1) if first.count else None
        if left is not None and not worth_reading(left):
            return
        end = asked + window if first.count is None else min(asked + window, first.count + 1)
        numbers = range(asked, min(end, paginator.max_pages + 1))
        if not numbers:
            return  # more pages than the first answer counted
        results = await asyncio.gather(*(fetch(number) for number in numbers), return_exceptions=True)
        last = False
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, ApiError):
                    continue
                raise result
            stalled = progress.repeats(result)
            if stalled is not None:
                raise PagesDoNotAdvance(stalled)
            yield result
            last = last or not result.more
        if last or enough():
            return
        asked = numbers[-1] + 1
    raise TooManyPages(paginator.max_pages)
