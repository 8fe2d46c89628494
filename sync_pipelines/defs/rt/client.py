"""A small typed async client for the parts of RT REST2 the sync uses, on the shared HTTP layer.

python-rt's ``AsyncRt`` was considered: it has no retries, no rate limit and no call to list custom fields,
and it would bring its own ``httpx`` client that the shared limits could not govern; a few calls are simpler
to write on the shared layer than to wrap. The token is the ``ApiClient``'s ``StaticToken`` strategy (see
``resources.py``); the custom-field search and the user listing page through the shared paginator interface
(``page``, ``per_page``, ``items``, ``next_page``; the users' ``RtUserPages`` also reads ``pages``), bounded at
``MAX_PAGES`` and ``MAX_USER_PAGES``.

What RT 5 does that shapes this client (see docs/benchmarks.md):
- a user custom field that is not applied to users is listed by LookupType but left out of every user's
  ``CustomFields`` and silently ignored by ``PUT /user/{id}``: ``applied_user_field_names`` reads one user record;
- a PUT answers 200 with messages quoting old and new values: ``messages.read_reply`` reads them by grammar, and a
  change no message confirms is not written;
- every token-authenticated request costs RT a bcrypt check: users are read 100 to a page
  (``GET /users?fields=id,Name,CustomFields``), not one GET each;
- a field's type and MaxValues come with the field listing the sync reads anyway (``fields=...,Type,MaxValues``); a
  Select's values come with its record (``GET /customfield/{id}`` lists them all, in their order, in ``Values``:
  one request, where ``/customfield/{id}/values`` pages them 20 at a time with no next link).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sync_pipelines.core.errors import ApiError, SyncError
from sync_pipelines.core.http import ApiClient
from sync_pipelines.core.json_value import JsonValue
from sync_pipelines.core.paging import Page, PageNumberPaginator, PageParams, collect
from sync_pipelines.defs.rt.fields import holds
from sync_pipelines.defs.rt.messages import Reply, read_reply

MAX_PAGES = 100  # 10,000 user custom fields: far beyond any real RT, so something is wrong
PER_PAGE = 100  # RT's cap
CUSTOM_FIELD_PAGES = PageNumberPaginator(
    items="items", next="next_page", page_size=("per_page", 100), max_pages=MAX_PAGES, items_required=False
)
USER_PAGE_FIELDS = "id,Name,CustomFields"
# Users read in pages at most (200,000 users); past it, and at a page that does not advance, the caller reads the
# users still missing one by one.
MAX_USER_PAGES = 2000


class RtRecordError(SyncError):
    """One user could not be read or written; the run goes on without it."""


# RT's own list of values; another class (``ValuesClass``) gives a Select's values from outside RT, unchecked.
RT_VALUES_CLASS = "RT::CustomFieldValues"


@dataclass(frozen=True)
class UserField:
    id: str
    name: str
    disabled: bool
    type: str = "Freeform"
    max_values: int = 1
    own_values: bool = True  # its values (a Select's) are RT's own list, which RT checks values against


@dataclass(frozen=True)
class FieldListing:
    fields: list[UserField]
    # RT gives ``total: null`` when the token's user may not see every record (e.g. no SeeCustomField).
    total_known: bool


@dataclass(frozen=True, kw_only=True)
class UsersPage(Page):
    """A page of RT's users: the page as the paginator read it, and the users on it."""

    users: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # id -> {"disabled": bool, "values": {...}}
    last_id: int | None = None  # the highest user id on the page

    @property
    def pages(self) -> int | None:
        """How many pages RT counted (None: it gave no count that can be read)."""
        return self.count


def _truthy(value: Any) -> bool:
    return str(value or "0").strip() not in ("", "0")


def whole_number(value: Any, digits: int = 18) -> int | None:
    """A count or an id from RT's answer (RT gives numbers as JSON numbers or as strings of digits): the number
    when it is a whole one of at most ``digits`` digits, else None. Measured before it is converted: a string of
    10,000 digits is never handed to ``int()`` (which refuses past 4,300), nor ``"²"`` (a digit to ``isdigit``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < 10**digits else None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if 0 < len(text) <= digits and text.isascii() and text.isdigit() else None
    return None


def _max_values(value: Any) -> int:
    """RT's ``MaxValues`` (0 is unlimited); 1 when RT gives none that can be read."""
    number = whole_number(value, 9)
    return 1 if number is None else number


@dataclass(frozen=True)
class RtUserPages(PageNumberPaginator):
    """RT's user listing, 100 to a page by id: a ``PageNumberPaginator`` that also reads RT's page count
    (``pages``, a whole number as ``whole_number`` measures it) and takes another page to follow when the answer
    has a ``next_page`` link, or, RT having given no count (``pages: null``), when the page is full.

    Read a few pages at once (``paging.read_pages_ahead``, from ``source``)."""

    def read(self, asked: int, body: JsonValue) -> Page | None:
        page = super().read(asked, body)
        if page is None or not isinstance(body, dict):
            return None
        count = whole_number(body.get("pages"), 9)
        more = self.next in body or (count is None and len(page.items) >= PER_PAGE)
        return Page(page.asked, page.items, more, page.number, count)


USER_PAGES = RtUserPages(
    items="items", next="next_page", page_size=("per_page", PER_PAGE), max_pages=MAX_USER_PAGES
)


def field_values(custom_fields: Any, fields: list[str]) -> dict[str, Any]:
    """``{field: value}`` from a user's ``CustomFields`` list; a single value is itself, none is None."""
    values: dict[str, Any] = {field: None for field in fields}
    for entry in custom_fields if isinstance(custom_fields, list) else []:
        if isinstance(entry, dict) and entry.get("name") in values:
            found = [value for value in entry.get("values") or [] if value is not None]
            values[entry["name"]] = found[0] if len(found) == 1 else (found or None)
    return values


class RequestTrackerClient:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def user_custom_fields(self) -> FieldListing:
        """Every custom field whose LookupType is ``RT::User``, disabled ones too."""
        totals: list[JsonValue] = []

        async def page(params: PageParams) -> JsonValue:
            status, body = await self.api.request_json(
                "POST",
                "customfields",
                params=params,
                json_body=[{"field": "LookupType", "value": "RT::User"}],
                resend_after_timeout=True,  # a search: a second copy changes nothing
            )
            if status != 200 or not isinstance(body, dict):
                raise ApiError(
                    "RT", "POST", "customfields", f"HTTP {status}: {self.api.excerpt(body)}", status=status
                )
            totals.append(body.get("total"))
            return body

        items = await collect(
            CUSTOM_FIELD_PAGES,
            page,
            {"fields": "Name,LookupType,Disabled,Type,MaxValues,ValuesClass", "find_disabled_rows": "1"},
            error=lambda message: ApiError("RT", "POST", "customfields", message),
        )
        fields = [
            UserField(
                str(item.get("id")),
                str(item["Name"]),
                _truthy(item.get("Disabled")),
                str(item.get("Type") or "Freeform"),
                _max_values(item.get("MaxValues")),
                str(item.get("ValuesClass") or RT_VALUES_CLASS) == RT_VALUES_CLASS,
            )
            for item in items
            if isinstance(item, dict) and item.get("Name")
        ]
        return FieldListing(fields, total_known=bool(totals) and totals[0] is not None)

    async def user_custom_field_names(self) -> list[str]:
        """Names of the enabled custom fields that apply to users (LookupType ``RT::User``)."""
        return [field.name for field in (await self.user_custom_fields()).fields if not field.disabled]

    async def select_values(self, field_id: str) -> tuple[str, ...] | None:
        """A Select's values, in their order, from its record (``GET /customfield/{id}``); None when the record
        lists none (an RT that does not give them there)."""
        path = f"customfield/{field_id}"
        status, body = await self.api.request_json("GET", path)
        if status != 200 or not isinstance(body, dict):
            raise ApiError("RT", "GET", path, f"HTTP {status}: {self.api.excerpt(body)}", status=status)
        values = body.get("Values")
        if not isinstance(values, list):
            return None
        return tuple(str(value) for value in values if isinstance(value, (str, int, float)))

    async def applied_user_field_names(self) -> list[str] | None:
        """Names of the user custom fields RT shows on a user record (those applied to users), read from one user;
        None when RT shows no user to this token."""
        status, body = await self.api.request_json(
            "GET", "users", params={"per_page": "1", "fields": "id,CustomFields"}
        )
        if status != 200 or not isinstance(body, dict):
            raise ApiError("RT", "GET", "users", f"HTTP {status}: {self.api.excerpt(body)}", status=status)
        items = body.get("items") or []
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            return None
        entries = items[0].get("CustomFields")
        return (
            [str(e["name"]) for e in entries if isinstance(e, dict) and e.get("name")]
            if isinstance(entries, list)
            else []
        )

    async def users_page(self, page: int, fields: list[str]) -> UsersPage:
        """One page of up to 100 enabled users, by id, with their custom field values.

        RT 5.0.3 lists ``Disabled`` as ``""`` for every user in a collection, so disabled users are left out here
        (RT's default) and read one by one, where ``GET /user/{id}`` says ``"Disabled": "1"``."""
        params = USER_PAGES.params(page, {"orderby": "id", "order": "ASC", "fields": USER_PAGE_FIELDS})
        status, body = await self.api.request_json("GET", "users", params=params)
        read = USER_PAGES.read(page, body) if status == 200 else None
        if read is None:
            raise ApiError("RT", "GET", "users", f"HTTP {status}: {self.api.excerpt(body)}", status=status)
        users: dict[str, dict[str, Any]] = {}
        last_id: int | None = None
        for item in read.items:
            if not isinstance(item, dict) or (user_id := whole_number(item.get("id"))) is None:
                continue
            users[str(user_id)] = {
                "disabled": False,
                "values": field_values(item.get("CustomFields"), fields),
            }
            last_id = max(last_id or 0, user_id)
        return UsersPage(
            read.asked, read.items, read.more, read.number, read.count, users=users, last_id=last_id
        )

    async def user_record(self, user_id: str, fields: list[str]) -> dict[str, Any]:
        """``{"disabled": bool, "values": {field: value}}`` for one user."""
        status, body = await self.api.request_json("GET", f"user/{user_id}")
        if status == 404:
            raise RtRecordError(f"RT has no user {user_id} (RT answered {self._message(body)})")
        if status != 200 or not isinstance(body, dict):
            raise RtRecordError(f"RT answered HTTP {status} reading user {user_id}")
        return {
            "disabled": _truthy(body.get("Disabled")),
            "values": field_values(body.get("CustomFields"), fields),
        }

    async def user_fields(self, user_id: str, fields: list[str]) -> dict[str, Any]:
        """Current values of ``fields`` for one user; a single-value field comes back as its value or None."""
        return (await self.user_record(user_id, fields))["values"]

    async def set_user_fields(self, user_id: str, fields: dict[str, Any]) -> Reply:
        """Write ``fields`` (and no other) in one PUT; the reply says which of them RT confirmed.

        A PUT whose answer was lost (a timeout, a broken connection) or was a 5xx is not resent blindly: what RT
        holds is read first, and the PUT is sent again only if RT does not hold the values already (a resent PUT
        that RT had applied answers no message at all): ``api.request_unless_applied``, which counts the resends."""
        path = f"user/{user_id}"

        async def applied() -> bool:
            values = (await self.user_record(user_id, list(fields)))["values"]
            return all(holds(values.get(name), value) for name, value in fields.items())

        response = await self.api.request_unless_applied(
            "PUT", path, applied, json_body={"CustomFields": dict(fields)}
        )
        if response is None:
            return Reply(confirmed=tuple(fields), unconfirmed=())
        if response.status_code == 404:
            raise RtRecordError(f"RT has no user {user_id}")
        if response.status_code != 200:
            raise RtRecordError(f"RT answered HTTP {response.status_code}: {self.api.excerpt(response.text)}")
        messages = self.api.parse_json(response, "PUT", f"user/{user_id}")
        if not isinstance(messages, list):
            raise RtRecordError(
                f"RT answered {self.api.excerpt(json.dumps(messages))} instead of a message list"
            )
        return read_reply(messages, fields)

    def _message(self, body: Any) -> str:
        """RT's ``message`` (or its whole answer), as ``excerpt`` makes any server text fit for an error."""
        if isinstance(body, dict) and "message" in body:
            return repr(self.api.excerpt(body["message"]))
        return repr(self.api.excerpt(body, 100))
