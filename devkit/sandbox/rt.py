"""Request Tracker REST2 sandbox: users with custom fields, served with the shapes and quirks of real RT.

It stands in for RT as the target of the "RT user custom fields" sync. The quirks a client must cope with are
kept on purpose: a PUT answers 200 with an array of messages even when a value was refused, unknown custom
fields are skipped silently, collection items carry only ``type``/``id``/``_url`` unless ``fields=`` asks
for more, a user's collection ``id`` is its *name*, and ``next_page``/``prev_page`` are absent, not null,
when there is no such page.

Where they were compared (``sync_pipelines_tests/rt_real/test_rt_contract.py`` runs one set of assertions against
this stand-in and a real RT 5.0.3), it answers as RT does: reply messages quote old values
(``Grade K changed to 1``, ``Student ID S1 added``), a refusal reads ``Could not add a new value to custom field
'Grade': Input must match [...]``, a GET of an unknown user is ``404 {"message": "Not Found"}``, a user custom field
that is not applied to users (``"Applied": False``) is listed by LookupType but left out of users' ``CustomFields`` and
ignored by a PUT, numbers in field listings are strings, ``GET /customfields`` without a query lists nothing, a
token whose user lacks ``SeeCustomField`` sees no custom field (``total: null``) and one without
``ModifyCustomField`` gets ``Permission Denied`` per field. A Select field (``"Type": "Select"``, its list in
``"Values"``) answers as RT's does: its record lists its values (and ``/customfield/{id}/values`` pages them), a
value its list lacks is refused with ``Invalid value for custom field`` (no field named), a value differing only in
case is stored in the list's spelling, and one the user holds in another case already changes nothing, with no
message. Server knobs (``ServerKnobs``, changed at run time with
the ``server`` state action) add RT's pace: ``request_cost_ms`` per request (RT checks the token with bcrypt on each
one), served by at most ``workers`` at a time, and ``close_connection`` (RT answers ``Connection: close``). The cost
defaults to 0 so that the suite stays fast; the contract tests run the stand-in with an RT-like cost.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devkit.sandbox.sample_data import GRADES, generate_students
from devkit.sandbox.server import Knobs, SandboxApp

API_PREFIX = "/REST/2.0"
USER_LOOKUP_TYPE = "RT::User"
TICKET_LOOKUP_TYPE = "RT::Queue-RT::Ticket"
# ``(?#...)`` is how RT names a pattern: its refusal message shows "[Grade pattern]" instead of the regex.
GRADE_PATTERN = r"(?#Grade pattern)^(K|[0-9]|1[0-2]|20[0-9]{2})$"
DEFAULT_TOKEN = "sandbox-rt-token"
RT_VERSION = "5.0.5"
NOT_FOUND_MESSAGE = "Resource does not exist; use POST to create"  # PUT to an unknown record
GET_NOT_FOUND_MESSAGE = "Not Found"  # GET of an unknown record (RT 5.0.3)
# Rights a token's user holds (granted globally); the default token holds them all.
ALL_RIGHTS = frozenset({"AdminUsers", "ShowUserHistory", "SeeCustomField", "ModifyCustomField"})
RIGHTS_KEY = web.RequestKey("rt_rights", frozenset)
SAMPLE_CREATED = "2024-08-01T08:00:00Z"

# Attributes a PUT may change (RT's WritableAttributes, less the ones with side effects such as Name).
WRITABLE_USER_ATTRIBUTES = (
    "EmailAddress",
    "RealName",
    "NickName",
    "Organization",
    "Comments",
    "Lang",
    "Gecos",
    "WorkPhone",
)
USER_ATTRIBUTES = (
    "id",
    "Name",
    *WRITABLE_USER_ATTRIBUTES,
    "Privileged",
    "Disabled",
    "Created",
    "LastUpdated",
)
CUSTOM_FIELD_ATTRIBUTES = (
    "id",
    "Name",
    "Description",
    "Type",
    "MaxValues",
    "Pattern",
    "LookupType",
    "EntryHint",
    "ValidationHint",
    "SortOrder",
    "UniqueValues",
    "Disabled",
    "Created",
    "LastUpdated",
)
# Columns a listing's ``fields=`` may ask for besides those a field's own record shows.
CUSTOM_FIELD_COLUMNS = (*CUSTOM_FIELD_ATTRIBUTES, "ValuesClass", "BasedOn")
# Types whose values come from a list (RT's IsSelectionType): their record links to ``/customfield/{id}/values``.
SELECTION_TYPES = frozenset({"Select", "Combobox", "Autocomplete"})
# RT's reply when a Select is sent a value its list does not hold, in any case; it names no field.
INVALID_VALUE = "Invalid value for custom field"
OPERATORS = frozenset(
    {"=", "!=", "<>", "<", ">", "<=", ">=", "LIKE", "NOT LIKE", "MATCHES", "STARTSWITH", "ENDSWITH"}
)
NEGATIVE_OPERATORS = frozenset({"!=", "<>", "NOT LIKE"})
_CF_LIMIT = re.compile(r"CustomField\.\{(.*)\}")


# The real RT 5's pace as measured with devkit/request_tracker.py (docs/benchmarks.md, "Stand-ins calibrated"):
# at BcryptCost 10 with 2 Starlet workers, one request of the sync's plan (pages, PUTs, GETs) takes 90-98 ms sent
# one at a time (a token-authenticated GET /rt alone 63-88 ms), and every connection is closed.
# ``python -m devkit.sandbox rt --like-real`` runs the stand-in at this pace.
REAL_RT_PACE: dict[str, Any] = {"request_cost_ms": 90.0, "workers": 2, "close_connection": True}


@dataclass
class ServerKnobs:
    """RT's own pace, as a stand-in can show it: what each request costs the server, how many it serves at once."""

    # Server time per API request (RT: a bcrypt check of the token, ~200-400 ms at BcryptCost 12, ~8-25 ms at 4).
    request_cost_ms: float = 0.0
    # Requests served at once (RT: Starlet's --max-workers); None: as many as come.
    workers: int | None = None
    # Answer ``Connection: close`` and close it (RT: --max-keepalive-reqs 1, the default).
    close_connection: bool = True
    # How ``GET /users`` pages: ``rt`` (as RT does); ``stuck``: every page is page 1 again, with ``pages: null``
    # and a ``next_page`` link (a paging that never advances); ``undercounted``: ``pages`` says one page fewer
    # than there are, as when users are created (requestors from e-mail) while the pages are read.
    users_paging: str = "rt"

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown RT server knobs: {sorted(unknown)}; known: {sorted(known)}")
        for name, value in changes.items():
            setattr(self, name, value)


class _ClientError(Exception):
    """A request RT would refuse as a whole (nothing is changed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _friendly_pattern(pattern: str) -> str:
    """RT's FriendlyPattern: the ``(?#comment)`` in brackets when there is one, else the regex itself."""
    named = re.search(r"\(\?#([^)]*)\)", pattern)
    return f"[{named.group(1)}]" if named else pattern


def _scalar(value: Any, field: str) -> str:
    """A JSON scalar as the string Perl would store; objects and booleans are refused like RT refuses refs."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _ClientError(400, f"Invalid value type for CustomField {field}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." if char == "_" else ".*" if char == "%" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _compare(actual: str, operator: str, expected: str) -> bool:
    """One SQL-ish comparison as RT's search does it: case-insensitive, LIKE wrapped in ``%``."""
    if operator == "=":
        return actual.casefold() == expected.casefold()
    if operator in ("!=", "<>"):
        return actual.casefold() != expected.casefold()
    if operator in ("LIKE", "MATCHES", "NOT LIKE"):
        found = _like_regex(f"%{expected}%").fullmatch(actual) is not None
        return not found if operator == "NOT LIKE" else found
    if operator == "STARTSWITH":
        return _like_regex(f"{expected}%").fullmatch(actual) is not None
    if operator == "ENDSWITH":
        return _like_regex(f"%{expected}").fullmatch(actual) is not None
    left: Any
    right: Any
    try:
        left, right = float(actual), float(expected)
    except ValueError:
        left, right = actual.casefold(), expected.casefold()
    if operator == "<":
        return left < right
    if operator == ">":
        return left > right
    if operator == "<=":
        return left <= right
    return left >= right


def _limit_matches(values: list[str], operator: str, expected: str) -> bool:
    """A record with several values (a multi-value custom field) matches a negative test only if all do."""
    if operator in NEGATIVE_OPERATORS:
        return all(_compare(value, operator, expected) for value in values)
    return any(_compare(value, operator, expected) for value in values)


class RequestTrackerSandbox(SandboxApp):
    """RT REST2 under ``/REST/2.0/``: users, user custom fields, and searches over both.

    ``users`` maps a user id to ``{"Name", "EmailAddress", "RealName", "CustomFields": {field name: [values]}}``
    (``Privileged`` and ``Disabled`` optional). ``custom_fields`` are RT custom field records: ``id``, ``Name``,
    ``LookupType`` (``RT::User`` for user fields), ``MaxValues`` (1 single-value, 0 unlimited) and ``Pattern``
    (a field named "Grade" without a ``Pattern`` gets ``GRADE_PATTERN``).
    """

    system = "rt"

    def __init__(
        self,
        users: dict[int, dict[str, Any]],
        custom_fields: list[dict[str, Any]],
        token: str = DEFAULT_TOKEN,
        knobs: Knobs | None = None,
        server: ServerKnobs | None = None,
    ) -> None:
        self.token = token
        self.tokens: dict[str, frozenset[str]] = {}  # more tokens, with their users' rights
        self.server = server or ServerKnobs()
        self._worker_slots: asyncio.Semaphore | None = None
        self._worker_slots_size: int | None = None
        self._transaction = 1000
        self._custom_fields: dict[int, dict[str, Any]] = {}
        self._patterns: dict[int, re.Pattern[str] | None] = {}
        self._user_fields: list[dict[str, Any]] = []
        self._user_fields_by_name: dict[str, dict[str, Any]] = {}
        for definition in custom_fields:
            self._add_custom_field(definition)
        self._users: dict[int, dict[str, Any]] = {}
        self._ids_by_name: dict[str, int] = {}
        self._orders: dict[str, list[int]] = {}
        for user_id, record in users.items():
            self._add_user(int(user_id), record)
        super().__init__(knobs)
        self.app.middlewares.append(self._server_middleware)
        self.app.on_response_prepare.append(self._close_connection)

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_sample(
        cls, size: int, seed: int = 7, knobs: Knobs | None = None, token: str = DEFAULT_TOKEN
    ) -> RequestTrackerSandbox:
        """Users for the sample students that have an RT user: about 20 % already correct, the rest empty or stale."""
        rng = random.Random(f"rt-sandbox-{seed}")
        users: dict[int, dict[str, Any]] = {
            1: {"Name": "RT_System", "RealName": "The RT System itself", "Privileged": 1},
            6: {"Name": "Nobody", "RealName": "Nobody in particular"},
            14: {
                "Name": "root",
                "EmailAddress": "root@localhost",
                "RealName": "Enoch Root",
                "Privileged": 1,
            },
            20: {
                "Name": "helpdesk",
                "EmailAddress": "helpdesk@school.example.edu",
                "RealName": "Help Desk",
                "Privileged": 1,
                "CustomFields": {"Department": ["IT"]},
            },
        }
        for student in generate_students(size, seed):
            if student.rt_user_id is None:
                continue
            grade: list[str] = [student.grade]
            student_id: list[str] = [student.student_id]
            if rng.random() >= 0.2:
                grade_state = rng.choice(["empty", "stale", "graduation_year", "correct"])
                id_state = rng.choice(["empty", "stale", "correct"])
                if grade_state == id_state == "correct":
                    grade_state = "empty"
                if grade_state == "empty":
                    grade = []
                elif grade_state == "stale":
                    previous = GRADES.index(student.grade) - 1
                    grade = [GRADES[previous]] if previous >= 0 else ["1"]
                elif grade_state == "graduation_year":
                    grade = [str(2025 + 12 - GRADES.index(student.grade))]
                if id_state == "empty":
                    student_id = []
                elif id_state == "stale":
                    student_id = [rng.choice([student.student_id[1:], student.student_id.lower()])]
            name = student.student_id.lower()
            users[student.rt_user_id] = {
                "Name": name,
                "EmailAddress": f"{name}@students.school.example.edu",
                "RealName": f"{student.first_name} {student.last_name}",
                "CustomFields": {
                    "Grade": grade,
                    "Student ID": student_id,
                    "Department": ["Students"] if rng.random() < 0.5 else [],
                },
            }
        custom_fields = [
            {"id": 3, "Name": "Severity", "LookupType": TICKET_LOOKUP_TYPE, "MaxValues": 1},
            {
                "id": 12,
                "Name": "Grade",
                "LookupType": USER_LOOKUP_TYPE,
                "MaxValues": 1,
                "Pattern": GRADE_PATTERN,
            },
            {"id": 13, "Name": "Student ID", "LookupType": USER_LOOKUP_TYPE, "MaxValues": 1},
            {"id": 14, "Name": "Department", "LookupType": USER_LOOKUP_TYPE, "MaxValues": 0},
        ]
        return cls(users, custom_fields, token=token, knobs=knobs)

    def _next_transaction(self) -> int:
        self._transaction += 1
        return self._transaction

    def _add_custom_field(self, definition: dict[str, Any]) -> dict[str, Any]:
        field_id = int(definition.get("id") or max(self._custom_fields, default=0) + 1)
        if field_id in self._custom_fields:
            raise ValueError(f"custom field id {field_id} is used twice")
        name = str(definition["Name"])
        pattern = definition.get("Pattern")
        if pattern is None:
            pattern = GRADE_PATTERN if name == "Grade" else ""
        record = {
            "id": field_id,
            "Name": name,
            "Description": str(definition.get("Description", "")),
            "Type": str(definition.get("Type", "Freeform")),
            "MaxValues": int(definition.get("MaxValues", 1)),
            "Pattern": "",
            "LookupType": str(definition.get("LookupType", USER_LOOKUP_TYPE)),
            "EntryHint": str(definition.get("EntryHint", "")),
            "ValidationHint": str(definition.get("ValidationHint", "")),
            "SortOrder": int(definition.get("SortOrder", 0)),
            "UniqueValues": 0,
            "ValuesClass": "RT::CustomFieldValues",
            "BasedOn": "",
            "Values": [str(value) for value in definition.get("Values") or ()],
            "Disabled": int(definition.get("Disabled", 0)),
            "Applied": bool(definition.get("Applied", True)),
            "Created": SAMPLE_CREATED,
            "LastUpdated": SAMPLE_CREATED,
        }
        self._custom_fields[field_id] = record
        self._set_pattern(record, str(pattern))
        self._index_custom_fields()
        return record

    def _set_pattern(self, field: dict[str, Any], pattern: str) -> None:
        compiled = re.compile(pattern) if pattern else None
        field["Pattern"] = pattern
        self._patterns[field["id"]] = compiled

    def _index_custom_fields(self) -> None:
        """Cache the enabled user fields so that a GET does not scan every field definition."""
        self._user_fields = [
            field
            for _, field in sorted(self._custom_fields.items())
            if field["LookupType"] == USER_LOOKUP_TYPE and not field["Disabled"] and field["Applied"]
        ]
        self._user_fields_by_name = {field["Name"].casefold(): field for field in self._user_fields}

    def _field_for_setup(self, key: Any) -> dict[str, Any]:
        """Any user custom field, applied or not, enabled or not (values as left-over data)."""
        field = self._user_field(str(key))
        if field is not None:
            return field
        for candidate in self._custom_fields.values():
            if candidate["LookupType"] == USER_LOOKUP_TYPE and str(key).casefold() in (
                candidate["Name"].casefold(),
                str(candidate["id"]),
            ):
                return candidate
        raise ValueError(f"no user custom field {key!r}")

    def _add_user(self, user_id: int, record: dict[str, Any]) -> dict[str, Any]:
        if user_id in self._users:
            raise ValueError(f"user {user_id} exists already")
        name = str(record.get("Name") or f"user{user_id}")
        if name.casefold() in self._ids_by_name:
            raise ValueError(f"user name {name!r} is used twice")
        user: dict[str, Any] = {attribute: "" for attribute in WRITABLE_USER_ATTRIBUTES}
        for attribute in WRITABLE_USER_ATTRIBUTES:
            if record.get(attribute) is not None:
                user[attribute] = str(record[attribute])
        user.update(
            id=user_id,
            Name=name,
            Privileged=int(record.get("Privileged", 0)),
            Disabled=int(record.get("Disabled", 0)),
            Created=SAMPLE_CREATED,
            LastUpdated=SAMPLE_CREATED,
            cf={},
            txn=self._next_transaction(),
        )
        for key, values in (record.get("CustomFields") or {}).items():
            field = self._field_for_setup(key)
            listed = [values] if isinstance(values, str) else list(values or [])
            if listed:
                user["cf"][field["id"]] = [str(value) for value in listed]
        self._users[user_id] = user
        self._ids_by_name[name.casefold()] = user_id
        self._orders.clear()
        return user

    # -- state for tests ---------------------------------------------------------------------------------
    def state_snapshot(self) -> dict[str, Any]:
        """Every user with all user custom fields by name (``[]`` when unset), and the field definitions."""
        users = {}
        for user_id, user in self._users.items():
            users[str(user_id)] = {
                "Name": user["Name"],
                "EmailAddress": user["EmailAddress"],
                "RealName": user["RealName"],
                "Privileged": user["Privileged"],
                "Disabled": user["Disabled"],
                "CustomFields": {
                    field["Name"]: list(user["cf"].get(field["id"], ())) for field in self._user_fields
                },
            }
        return {
            "users": users,
            "custom_fields": [dict(field) for _, field in sorted(self._custom_fields.items())],
        }

    def apply_state_change(self, change: dict[str, Any]) -> None:
        """Out-of-band edits, as an RT admin would make them in the web UI (no pattern check, no messages).

        Actions: ``set_custom_field`` (user_id, field, values | value), ``add_user`` (user_id, Name, ...),
        ``set_user`` (user_id, attributes), ``delete_user`` (user_id), ``set_token`` (token),
        ``add_custom_field`` (a field record), ``remove_custom_field`` (name | id),
        ``set_pattern`` (field, pattern), ``set_field`` (field; Applied, Disabled, Type, MaxValues, Values: a
        type change leaves what users hold as it is, as RT does), ``add_token`` (token, rights: the token's user's
        rights), ``server`` (``ServerKnobs`` fields).
        """
        action = change.get("action")
        if action == "set_custom_field":
            user = self._require_user(change["user_id"])
            field = self._field_for_setup(change["field"])
            values = change["values"] if "values" in change else change.get("value")
            listed = [] if values is None else [values] if isinstance(values, str) else list(values)
            if listed:
                user["cf"][field["id"]] = [str(value) for value in listed]
            else:
                user["cf"].pop(field["id"], None)
            self._touch(user)
        elif action == "add_user":
            record = {key: value for key, value in change.items() if key not in ("action", "user_id")}
            self._add_user(int(change["user_id"]), record)
        elif action == "set_user":
            user = self._require_user(change["user_id"])
            for attribute in (*WRITABLE_USER_ATTRIBUTES, "Privileged", "Disabled"):
                if attribute in change:
                    value = change[attribute]
                    user[attribute] = int(value) if attribute in ("Privileged", "Disabled") else str(value)
            self._touch(user)
        elif action == "delete_user":
            user = self._require_user(change["user_id"])
            del self._users[user["id"]]
            del self._ids_by_name[user["Name"].casefold()]
            self._orders.clear()
        elif action == "set_token":
            self.token = str(change["token"])
        elif action == "add_custom_field":
            self._add_custom_field({key: value for key, value in change.items() if key != "action"})
        elif action == "remove_custom_field":
            field = self._any_field(change.get("name", change.get("field", change.get("id"))))
            del self._custom_fields[field["id"]]
            del self._patterns[field["id"]]
            for user in self._users.values():
                user["cf"].pop(field["id"], None)
            self._index_custom_fields()
        elif action == "set_field":
            field = self._any_field(change["field"])
            if "Applied" in change:
                field["Applied"] = bool(change["Applied"])
            if "Disabled" in change:
                field["Disabled"] = int(change["Disabled"])
            if "Type" in change:
                field["Type"] = str(change["Type"])
            if "MaxValues" in change:
                field["MaxValues"] = int(change["MaxValues"])
            if "Values" in change:
                field["Values"] = [str(value) for value in change["Values"] or ()]
            self._index_custom_fields()
        elif action == "add_token":
            self.tokens[str(change["token"])] = frozenset(change.get("rights") or ())
        elif action == "server":
            self.server.update({key: value for key, value in change.items() if key != "action"})
        elif action == "set_pattern":
            field = self._any_field(change["field"])
            self._set_pattern(field, str(change.get("pattern") or ""))
        else:
            raise ValueError(f"unknown RT sandbox action {action!r}")

    def _require_user(self, user_id: Any) -> dict[str, Any]:
        user = self._users.get(int(user_id))
        if user is None:
            raise ValueError(f"no RT user {user_id}")
        return user

    def _any_field(self, key: Any) -> dict[str, Any]:
        text = str(key)
        if text.isascii() and text.isdigit() and int(text) in self._custom_fields:
            return self._custom_fields[int(text)]
        for field in self._custom_fields.values():
            if field["Name"].casefold() == text.casefold():
                return field
        raise ValueError(f"no custom field {key!r}")

    def _touch(self, user: dict[str, Any]) -> None:
        """A new transaction: new ETag, and cached orders by a changeable attribute are dropped."""
        user["txn"] = self._next_transaction()
        user["LastUpdated"] = _now()
        for orderby in [key for key in self._orders if key not in ("Name", "id")]:
            del self._orders[orderby]

    # -- HTTP --------------------------------------------------------------------------------------------
    @web.middleware
    async def _server_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """RT's pace: each API request takes ``request_cost_ms`` of one of ``workers`` (the token check)."""
        server = self.server
        if not request.path.startswith(API_PREFIX) or (not server.request_cost_ms and not server.workers):
            return await handler(request)
        if server.workers:
            if self._worker_slots is None or self._worker_slots_size != server.workers:
                self._worker_slots, self._worker_slots_size = (
                    asyncio.Semaphore(server.workers),
                    server.workers,
                )
            async with self._worker_slots:
                await asyncio.sleep(server.request_cost_ms / 1000)
                return await handler(request)
        await asyncio.sleep(server.request_cost_ms / 1000)
        return await handler(request)

    async def _close_connection(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.server.close_connection and request.path.startswith(API_PREFIX):
            await request.read()  # a body left unread would turn the close into a reset
            response.force_close()
            response.headers["Connection"] = "close"  # the headers are prepared before this hook runs

    def server_settings(self) -> dict[str, Any]:
        return asdict(self.server)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(f"{API_PREFIX}/rt", self._get_rt)
        router.add_get(f"{API_PREFIX}/user/{{id}}", self._get_user)
        router.add_put(f"{API_PREFIX}/user/{{id}}", self._put_user)
        router.add_get(f"{API_PREFIX}/users", self._search_users)
        router.add_post(f"{API_PREFIX}/users", self._search_users)
        router.add_get(f"{API_PREFIX}/customfield/{{id}}", self._get_custom_field)
        router.add_get(f"{API_PREFIX}/customfield/{{id}}/values", self._get_custom_field_values)
        router.add_get(f"{API_PREFIX}/customfields", self._search_custom_fields)
        router.add_post(f"{API_PREFIX}/customfields", self._search_custom_fields)
        # Everything else under the API answers JSON like RT, and counts under one name.
        router.add_route("*", f"{API_PREFIX}/{{tail:.*}}", self._not_found)

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"message": message}, status=status, headers=headers)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "token":
            token = credentials.strip()
            rights = ALL_RIGHTS if token == self.token else self.tokens.get(token)
            if rights is not None:
                request[RIGHTS_KEY] = rights
                return None
        return self._error(401, "Unauthorized")

    @staticmethod
    def _may(request: web.Request, right: str) -> bool:
        return right in request.get(RIGHTS_KEY, ALL_RIGHTS)

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}{API_PREFIX}"

    async def _json_body(self, request: web.Request, expected: type) -> Any:
        """Parse a PUT/POST body the way RT's RequestBodyIsJSON does; ``None`` for an empty body."""
        body = await request.read()
        if not body:
            return None
        if not request.content_type.startswith("application/json"):
            raise _ClientError(415, "Unsupported Media Type")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _ClientError(400, f"JSON parse error: {error}") from None
        if not isinstance(data, expected):
            raise _ClientError(400, f"JSON object must be a {'HASH' if expected is dict else 'ARRAY'}")
        return data

    async def _get_rt(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        return refused if refused is not None else web.json_response({"Version": RT_VERSION, "Plugins": []})

    async def _not_found(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        return refused if refused is not None else self._error(404, "Not Found")

    def _find_user(self, key: str) -> dict[str, Any] | None:
        if key.isascii() and key.isdigit():
            return self._users.get(int(key))
        user_id = self._ids_by_name.get(key.casefold())
        return None if user_id is None else self._users.get(user_id)

    def _user_custom_fields(self, user: dict[str, Any], base: str) -> list[dict[str, Any]]:
        values = user["cf"]
        return [
            {
                "id": str(field["id"]),
                "type": "customfield",
                "_url": f"{base}/customfield/{field['id']}",
                "name": field["Name"],
                "values": list(values.get(field["id"], ())),
            }
            for field in self._user_fields
        ]

    @staticmethod
    def _user_link(name: str, base: str) -> dict[str, str]:
        return {"type": "user", "id": name, "_url": f"{base}/user/{quote(name, safe='')}"}

    def _user_json(self, user: dict[str, Any], base: str) -> dict[str, Any]:
        user_id = user["id"]
        data = {attribute: user[attribute] for attribute in USER_ATTRIBUTES}
        data["Disabled"] = str(user["Disabled"])
        data["Creator"] = self._user_link("RT_System", base)
        data["LastUpdatedBy"] = self._user_link("root", base)
        data["Memberships"] = []
        data["CustomFields"] = self._user_custom_fields(user, base)
        data["_hyperlinks"] = [
            {"ref": "self", "type": "user", "id": user_id, "_url": f"{base}/user/{user_id}"},
            {"ref": "history", "_url": f"{base}/user/{user_id}/history"},
        ]
        return data

    async def _get_user(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        user = self._find_user(request.match_info["id"])
        if user is None:
            return self._error(404, GET_NOT_FOUND_MESSAGE)
        data = self._user_json(user, self._base(request))
        if not self._may(request, "SeeCustomField"):
            data.pop("CustomFields", None)
        return web.json_response(data, headers={"ETag": f'"{user["txn"]}"'})

    async def _put_user(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        try:
            data = await self._json_body(request, dict) or {}
            user = self._find_user(request.match_info["id"])
            if user is None:
                return self._error(404, NOT_FOUND_MESSAGE)
            if_match = request.headers.get("If-Match")
            if if_match is not None and not self._etag_matches(if_match, user["txn"]):
                return self._error(412, "Precondition Failed")
            messages = self._update_user(
                user, data, self._may(request, "SeeCustomField"), self._may(request, "ModifyCustomField")
            )
        except _ClientError as error:
            return self._error(error.status, error.message)
        return web.json_response(messages)

    @staticmethod
    def _etag_matches(header: str, transaction: int) -> bool:
        tags = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
        return "*" in tags or str(transaction) in tags

    def _update_user(
        self, user: dict[str, Any], data: dict[str, Any], see: bool = True, modify: bool = True
    ) -> list[str | None]:
        """Apply a PUT body and return RT's messages (a ``null`` among them where RT has one); validation comes
        first so a 400 changes nothing."""
        custom_fields = data.get("CustomFields")
        if custom_fields is not None and not isinstance(custom_fields, dict):
            raise _ClientError(400, "CustomFields must be a JSON object")
        planned: list[tuple[dict[str, Any], list[str] | None]] = []
        for key, value in (custom_fields or {}).items():
            field = self._user_field(str(key))
            if field is None or not see:
                continue  # not a user field applied to users, or one the token cannot see: RT skips it silently
            if value is None:
                planned.append((field, None))
            elif isinstance(value, list):
                planned.append((field, [_scalar(item, str(key)) for item in value]))
            else:
                planned.append((field, [_scalar(value, str(key))]))
        messages: list[str | None] = []
        for attribute in WRITABLE_USER_ATTRIBUTES:
            if attribute not in data:
                continue
            value = data[attribute]
            if isinstance(value, (dict, list, bool)):
                continue
            new = "" if value is None else _scalar(value, attribute)
            old = user[attribute]
            if new != old:
                user[attribute] = new
                shown = f"'{old}'" if old else "(no value)"
                messages.append(f"{attribute} changed from {shown} to '{new}'")
        for field, values in planned:
            if not modify:
                messages.append(
                    f"Could not add a new value to custom field '{field['Name']}': Permission Denied"
                )
                continue
            if field["MaxValues"] == 1:
                messages.extend(self._set_single(user, field, values))
            else:
                messages.extend(self._set_multiple(user, field, values or []))
        if any(message is not None for message in messages):
            self._touch(user)
        return messages

    def _user_field(self, key: str) -> dict[str, Any] | None:
        """RT's LoadCustomFieldByIdentifier limited to fields that apply to users."""
        if key.isascii() and key.isdigit():
            field = self._custom_fields.get(int(key))
            if field is None or field["LookupType"] != USER_LOOKUP_TYPE or field["Disabled"]:
                return None
            return field
        return self._user_fields_by_name.get(key.casefold())

    def _refusal(self, field: dict[str, Any], value: str) -> str | None:
        pattern = self._patterns.get(field["id"])
        if pattern is None or pattern.search(value):
            return None
        return (
            f"Could not add a new value to custom field '{field['Name']}': "
            f"Input must match {_friendly_pattern(field['Pattern'])}"
        )

    @staticmethod
    def _listed(field: dict[str, Any], value: str) -> str | None:
        """RT's canonical Select value: the list's own spelling of ``value``, matched ignoring case (RT's
        ``_CanonicalizeValueSelect``); None when the list has no such value. Other types keep ``value``."""
        if field["Type"] != "Select":
            return value
        return next((listed for listed in field["Values"] if listed.lower() == value.lower()), None)

    @staticmethod
    def _holds(field: dict[str, Any], held: str, value: str) -> bool:
        """RT's ``HasEntry``: a Select counts a held value the same as ``value`` ignoring case, other types exactly."""
        return held.lower() == value.lower() if field["Type"] == "Select" else held == value

    def _set_single(self, user: dict[str, Any], field: dict[str, Any], values: list[str] | None) -> list[str]:
        """RT's single-value update: the value is checked against a Select's list first ("Invalid value for custom
        field", naming no field), a value RT counts as the one held changes nothing and says nothing (a Select
        holding ``k`` keeps it when sent ``K``), and a Select stores and quotes its list's spelling."""
        current = user["cf"].get(field["id"])
        old = current[0] if current else None
        name = field["Name"]
        if values is None:
            if not old:
                return []
            del user["cf"][field["id"]]
            return [f"{old} is no longer a value for custom field {name}"]
        new = values[0] if values else ""
        if new == "":
            if old is None:
                return []
            refusal = self._refusal(field, "")
            if refusal:
                return [refusal]
            del user["cf"][field["id"]]
            return [f"{name} {old} deleted"]
        listed = self._listed(field, new)
        if listed is None:
            return [INVALID_VALUE]
        if old is not None and self._holds(field, old, listed):
            return []
        refusal = self._refusal(field, listed)
        if refusal:
            return [refusal]
        user["cf"][field["id"]] = [listed]
        return [f"{name} {listed} added" if old is None else f"{name} {old} changed to {listed}"]

    def _set_multiple(
        self, user: dict[str, Any], field: dict[str, Any], values: list[str]
    ) -> list[str | None]:
        """RT's multi-value update: the array replaces all values, added in request order, removed sorted; values
        are counted exactly, as sent. A Select checks each added value against its list, stores the list's
        spelling but quotes the value sent, and an added value it counts as one held is a ``null`` message and
        no change (so ``["k"]`` sent to a user holding ``K`` removes the ``K``, as RT 5 does)."""
        wanted = [value for value in values if value != ""]
        current = list(user["cf"].get(field["id"], ()))
        counts = Counter(wanted)
        counts.subtract(current)
        messages: list[str | None] = []
        name = field["Name"]
        for value in dict.fromkeys([*wanted, *sorted(counts)]):
            difference = counts[value]
            while difference > 0:
                difference -= 1
                listed = self._listed(field, value)
                if listed is None:
                    messages.append(INVALID_VALUE)
                    continue
                if any(self._holds(field, held, listed) for held in current):
                    messages.append(None)
                    continue
                refusal = self._refusal(field, listed)
                if refusal:
                    messages.append(refusal)
                    continue
                current.append(listed)
                messages.append(f"{value} added as a value for {name}")
            while difference < 0:
                difference += 1
                current.remove(value)
                messages.append(f"{value} is no longer a value for custom field {name}")
        if current:
            user["cf"][field["id"]] = current
        else:
            user["cf"].pop(field["id"], None)
        return messages

    async def _get_custom_field(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        field = self._custom_field_of(request)
        if field is None:
            return self._error(404, GET_NOT_FOUND_MESSAGE)
        if not self._may(request, "SeeCustomField"):
            return self._error(403, "Forbidden")
        base = self._base(request)
        # RT gives every number but the id as a string ("MaxValues": "1").
        data = {attribute: _text(field[attribute]) for attribute in CUSTOM_FIELD_ATTRIBUTES}
        data["id"] = field["id"]
        data["Creator"] = self._user_link("root", base)
        data["LastUpdatedBy"] = self._user_link("root", base)
        if field["Type"] == "Select":
            data["Values"] = list(field["Values"])  # RT lists a Select's values in its record, in their order
        data["_hyperlinks"] = [
            {
                "ref": "self",
                "type": "customfield",
                "id": field["id"],
                "_url": f"{base}/customfield/{field['id']}",
            }
        ]
        if field["Type"] in SELECTION_TYPES:
            data["_hyperlinks"].append(
                {"ref": "customfieldvalues", "_url": f"{base}/customfield/{field['id']}/values"}
            )
        return web.json_response(data)

    def _custom_field_of(self, request: web.Request) -> dict[str, Any] | None:
        key = request.match_info["id"]
        return self._custom_fields.get(int(key)) if key.isascii() and key.isdigit() else None

    async def _get_custom_field_values(self, request: web.Request) -> web.Response:
        """A field's list of values, paged as RT pages them here: ``count``, ``page``, ``per_page``, ``total`` and
        ``items``, no ``pages`` and no links to other pages; a field without a list (or none at all) lists
        nothing."""
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        if not self._may(request, "SeeCustomField"):
            return self._error(403, "Forbidden")
        field = self._custom_field_of(request)
        base = self._base(request)
        values = (
            list(enumerate(field["Values"], start=1)) if field and field["Type"] in SELECTION_TYPES else []
        )
        records = [{"id": number, "name": name} for number, name in values]

        def item(value: dict[str, Any]) -> dict[str, Any]:
            return {
                "type": "customfieldvalue",
                "id": value["id"],
                "name": value["name"],
                "_url": f"{base}/customfield/{field['id'] if field else 0}/value/{value['id']}",
            }

        page = self._page(request, records, item)
        return web.json_response({key: page[key] for key in ("count", "page", "per_page", "total", "items")})

    # -- searches ----------------------------------------------------------------------------------------
    async def _read_query(self, request: web.Request) -> list[dict[str, Any]]:
        """The JSON search of ``?query=`` (GET) or of the body (POST): a list of ``{field, operator, value}``."""
        if request.method == "POST":
            query = await self._json_body(request, list)
        else:
            raw = request.query.get("query")
            try:
                query = json.loads(raw) if raw else None
            except ValueError as error:
                raise _ClientError(400, f"JSON parse error: {error}") from None
            if query is not None and not isinstance(query, list):
                raise _ClientError(400, "JSON object must be a ARRAY")
        limits = []
        for limit in query or []:
            if not isinstance(limit, dict) or not limit.get("field") or limit.get("value") is None:
                continue  # RT ignores limits without a field or a value
            operator = str(limit.get("operator") or "=").upper()
            if operator not in OPERATORS:
                raise _ClientError(400, f"Unsupported operator {limit.get('operator')!r}")
            limits.append({"field": str(limit["field"]), "operator": operator, "value": limit["value"]})
        return limits

    @staticmethod
    def _filter(
        records: Iterable[dict[str, Any]],
        limits: list[dict[str, Any]],
        getter: Callable[[dict[str, Any], str], list[str]],
        searchable: Callable[[str], bool],
    ) -> list[dict[str, Any]]:
        """Limits on one field are ORed and the fields ANDed, as DBIx::SearchBuilder does by default.

        A field that cannot be searched is skipped, as RT skips it.
        """
        groups: dict[str, list[tuple[str, str]]] = {}
        for limit in limits:
            if not searchable(limit["field"]):
                continue
            value = limit["value"]
            expected = value if isinstance(value, str) else json.dumps(value)
            groups.setdefault(limit["field"], []).append((limit["operator"], expected))
        if not groups:
            return list(records)
        return [
            record
            for record in records
            if all(
                any(_limit_matches(getter(record, field), operator, expected) for operator, expected in tests)
                for field, tests in groups.items()
            )
        ]

    def _page(
        self,
        request: web.Request,
        records: list[dict[str, Any]],
        item: Callable[[dict[str, Any]], dict[str, Any]],
        page: int | None = None,
    ) -> dict[str, Any]:
        """RT's paging: ``per_page`` 20 by default and at most 100; next/prev links only when they exist.
        ``page``: the page answered, whatever the request asked for."""
        per_page_raw = request.query.get("per_page", "")
        per_page = int(per_page_raw) if per_page_raw.isascii() and per_page_raw.isdigit() else 20
        per_page = 20 if per_page == 0 else min(per_page, 100)
        if page is None:
            page_raw = request.query.get("page", "")
            page = int(page_raw) if page_raw.isascii() and page_raw.isdigit() else 1
        page = max(page, 1)
        total = len(records)
        chunk = records[(page - 1) * per_page : page * per_page]
        pages = math.ceil(total / per_page)
        result: dict[str, Any] = {
            "count": len(chunk),
            "page": page,
            "pages": pages,
            "per_page": per_page,
            "total": total,
            "items": [item(record) for record in chunk],
        }
        if page < pages:
            result["next_page"] = str(request.url.update_query(page=str(page + 1)))
        if page > 1:
            result["prev_page"] = str(request.url.update_query(page=str(min(page - 1, pages))))
        return result

    @staticmethod
    def _fields_param(request: web.Request) -> list[str]:
        raw = request.query.get("fields", "")
        return [field.strip() for field in raw.split(",") if field.strip()]

    def _ordered_users(self, request: web.Request) -> list[dict[str, Any]]:
        """Users by Name (RT::Users' default order) unless ``orderby``/``order`` say otherwise; orders are cached."""
        orderby = request.query.get("orderby", "Name")
        if orderby not in USER_ATTRIBUTES:
            orderby = "Name"
        ids = self._orders.get(orderby)
        if ids is None:

            def sort_key(user: dict[str, Any]) -> Any:
                value = user[orderby]
                return value.casefold() if isinstance(value, str) else value

            ids = [user["id"] for user in sorted(self._users.values(), key=sort_key)]
            self._orders[orderby] = ids
        users = [self._users[user_id] for user_id in ids]
        if request.query.get("order", "ASC").upper() == "DESC":
            users.reverse()
        return users

    def _user_searchable(self, field: str) -> bool:
        match = _CF_LIMIT.fullmatch(field)
        if match:
            return self._user_field(match.group(1)) is not None
        return field in USER_ATTRIBUTES

    def _user_value(self, user: dict[str, Any], field: str) -> list[str]:
        match = _CF_LIMIT.fullmatch(field)
        if match:
            custom_field = self._user_field(match.group(1))
            return [] if custom_field is None else user["cf"].get(custom_field["id"], [])
        return [str(user[field])]

    async def _search_users(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        try:
            limits = await self._read_query(request)
        except _ClientError as error:
            return self._error(error.status, error.message)
        users = self._ordered_users(request)
        if request.query.get("find_disabled_rows") != "1":
            users = [user for user in users if not user["Disabled"]]
        users = self._filter(users, limits, self._user_value, self._user_searchable)
        base = self._base(request)
        fields = self._fields_param(request)

        def item(user: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = self._user_link(user["Name"], base)
            for field in fields:
                if field == "CustomFields":
                    see = self._may(request, "SeeCustomField")
                    result[field] = self._user_custom_fields(user, base) if see else ""
                elif field == "Disabled":
                    result[field] = "1" if user["Disabled"] else ""  # as RT 5.0.3 lists it
                elif field in USER_ATTRIBUTES:
                    result[field] = user[field]
            return result

        paging = self.server.users_paging
        answer = self._page(request, users, item, page=1 if paging == "stuck" else None)
        if paging == "stuck":
            answer["pages"] = None
            answer["next_page"] = str(request.url.update_query(page="2"))
        elif paging == "undercounted" and answer["pages"] > 1:
            answer["pages"] -= 1
        return web.json_response(answer)

    @staticmethod
    def _field_value(field: dict[str, Any], name: str) -> list[str]:
        return [str(field[name])]

    async def _search_custom_fields(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        try:
            limits = await self._read_query(request)
        except _ClientError as error:
            return self._error(error.status, error.message)
        # RT lists custom fields by SortOrder, then Name; without a query it lists none.
        fields = sorted(self._custom_fields.values(), key=lambda field: (field["SortOrder"], field["Name"]))
        if request.query.get("find_disabled_rows") != "1":
            fields = [field for field in fields if not field["Disabled"]]
        fields = self._filter(fields, limits, self._field_value, CUSTOM_FIELD_ATTRIBUTES.__contains__)
        if not limits:
            fields = []
        base = self._base(request)
        if not self._may(request, "SeeCustomField"):
            # RT shows the user no custom field, and does not say how many it cannot see.
            page = self._page(request, [], lambda field: field)
            page.update(total=None, pages=None)
            return web.json_response(page)
        wanted = [name for name in self._fields_param(request) if name in CUSTOM_FIELD_COLUMNS]

        def item(field: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = {
                "type": "customfield",
                "id": str(field["id"]),
                "_url": f"{base}/customfield/{field['id']}",
            }
            for name in wanted:
                result[name] = _text(field[name])
            return result

        return web.json_response(self._page(request, fields, item))
