"""A small typed async client for the parts of RT REST2 the sync uses, on the shared HTTP layer.

python-rt's ``AsyncRt`` was considered: it has no retries, no rate limit and no call to list custom fields,
and it would bring its own ``httpx`` client that the shared limits could not govern; three calls are simpler
to write on the shared layer than to wrap. The token is the ``ApiClient``'s ``StaticToken`` strategy (see
``resources.py``); the custom-field search pages with the shared paginator (``page``, ``per_page``, ``items``,
``next_page``), bounded at ``MAX_PAGES``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sync_pipelines.core.http import ApiClient, ApiError
from sync_pipelines.core.paging import PageNumberPaginator, collect

# RT answers 200 even when it refuses a value; these message shapes are its refusals.
REFUSAL = re.compile(r"could not|must match|invalid|not allowed|permission denied|failed", re.IGNORECASE)
MAX_PAGES = 100  # 10,000 user custom fields: far beyond any real RT, so something is wrong
CUSTOM_FIELD_PAGES = PageNumberPaginator(
    items="items", next="next_page", page_size=("per_page", 100), max_pages=MAX_PAGES, items_required=False
)


class RtRecordError(Exception):
    """One user could not be read or written; the run goes on without it."""


class RequestTrackerClient:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def user_custom_field_names(self) -> list[str]:
        """Names of every custom field that applies to users (LookupType ``RT::User``)."""

        async def page(params: dict[str, Any]) -> Any:
            status, body = await self.api.request_json(
                "POST",
                "customfields",
                params=params,
                json_body=[{"field": "LookupType", "value": "RT::User"}],
            )
            if status != 200 or not isinstance(body, dict):
                raise ApiError(
                    "RT", "POST", "customfields", f"HTTP {status}: {str(body)[:200]}", status=status
                )
            return body

        items = await collect(
            CUSTOM_FIELD_PAGES,
            page,
            {"fields": "Name,LookupType"},
            error=lambda message: ApiError("RT", "POST", "customfields", message),
        )
        return [str(item["Name"]) for item in items if isinstance(item, dict) and item.get("Name")]

    async def user_fields(self, user_id: str, fields: list[str]) -> dict[str, Any]:
        """Current values of ``fields`` for one user; a single-value field comes back as its value or None."""
        status, body = await self.api.request_json("GET", f"user/{user_id}")
        if status == 404:
            raise RtRecordError(f"RT has no user {user_id}")
        if status != 200 or not isinstance(body, dict):
            raise RtRecordError(f"RT answered HTTP {status} reading user {user_id}")
        values: dict[str, Any] = {field: None for field in fields}
        for entry in body.get("CustomFields") or []:
            if isinstance(entry, dict) and entry.get("name") in values:
                found = entry.get("values") or []
                values[entry["name"]] = found[0] if len(found) == 1 else (found or None)
        return values

    async def set_user_fields(self, user_id: str, fields: dict[str, Any]) -> list[str]:
        """Write every field in one PUT; a refusal in RT's message array is an ``RtRecordError``."""
        response = await self.api.request(
            "PUT",
            f"user/{user_id}",
            json_body={"CustomFields": {k: v for k, v in fields.items()}},
        )
        if response.status_code == 404:
            raise RtRecordError(f"RT has no user {user_id}")
        if response.status_code != 200:
            raise RtRecordError(f"RT answered HTTP {response.status_code}: {response.text[:200]}")
        messages = self.api.parse_json(response, "PUT", f"user/{user_id}")
        if not isinstance(messages, list):
            raise RtRecordError(f"RT answered {json.dumps(messages)[:200]} instead of a message list")
        refused = [str(message) for message in messages if REFUSAL.search(str(message))]
        if refused:
            raise RtRecordError("RT refused: " + "; ".join(refused))
        return [str(message) for message in messages]
