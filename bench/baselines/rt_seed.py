"""The old "RT User Custom Fields Sync" script, written plainly from its README and code (``external-apis.md``).

What it does, and so what this does: for every student with an ``rt_user_id``, in order and one at a time, one
``PUT /user/{id}`` per custom field (two per user), retrying three times on a status >= 500 with backoff, then a
fixed 0.5 s pause; it never reads what RT already holds, so every user is written on every run.
"""

from __future__ import annotations

import time

import httpx

PAUSE_SECONDS = 0.5
RETRIES = 3


def put_with_retries(client: httpx.Client, user_id: int, field: str, value: str) -> bool:
    for attempt in range(RETRIES + 1):
        response = client.put(f"user/{user_id}", json={"CustomFields": {field: value}})
        if response.status_code < 500:
            return response.status_code == 200
        time.sleep(2**attempt)
    return False


def run(rt_url: str, token: str, students: list[tuple[int, str, str]], pause: float = PAUSE_SECONDS) -> dict:
    """``students``: ``(rt_user_id, grade value, student id)``. Returns requests made and errors."""
    requests = errors = 0
    with httpx.Client(
        base_url=f"{rt_url}/REST/2.0/", headers={"Authorization": f"token {token}"}, timeout=10
    ) as client:
        for user_id, grade, student_id in students:
            for field, value in (("Grade", grade), ("Student ID", student_id)):
                requests += 1
                errors += not put_with_retries(client, user_id, field, value)
            time.sleep(pause)
    return {"requests": requests, "errors": errors}
