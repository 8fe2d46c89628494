"""The seed's ``sync_user_kind.py`` as ``external-apis.md`` describes it, for the benchmark to compare against.

Lookups one after another (10 s timeout, retried on timeouts after 1, 2 and 4 s, ``results[0]`` taken), then
``UPDATE users AS u SET kind = data.kind FROM (VALUES ...) AS data(kind, user_id) WHERE u.id = data.user_id::uuid``
in batches of 1000 on 4 threads, each connection with ``synchronous_commit = off``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg

TIMEOUT_SECONDS = 10.0
BACKOFF_SECONDS = (1.0, 2.0, 4.0)
BATCH_SIZE = 1000
WORKERS = 4


def seed_kind(exterieur: bool, gestionnaire: bool) -> str:
    if exterieur and gestionnaire:
        return "prestataire, gestionnaire"
    if exterieur:
        return "prestataire"
    if gestionnaire:
        return "gestionnaire"
    return "aucun"


def login(api_url: str, username: str, password: str) -> str:
    response = httpx.post(f"{api_url}/token/", json={"username": username, "password": password}, timeout=10)
    response.raise_for_status()
    return response.json()["access"]


def lookup_sequential(api_url: str, token: str, emails: Sequence[str]) -> dict[str, str | None]:
    """``{email: kind or None}``, one request at a time."""
    kinds: dict[str, str | None] = {}
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_SECONDS) as client:
        for email in emails:
            for pause in (*BACKOFF_SECONDS, None):
                try:
                    response = client.get(f"{api_url}/utilisateurs", params={"email": email})
                    break
                except httpx.TimeoutException:
                    if pause is None:
                        raise
                    time.sleep(pause)
            data = response.json()
            if data.get("count", 0) == 0:
                kinds[email] = None
            else:
                first = data["results"][0]
                kinds[email] = seed_kind(first["exterieur"], first["gestionnaire"])
    return kinds


def _write_batch(dsn: str, batch: Sequence[tuple[str, str]]) -> int:
    values = ", ".join(["(%s, %s)"] * len(batch))
    parameters = [value for user_id, kind in batch for value in (kind, user_id)]
    with psycopg.connect(dsn) as connection:
        connection.execute("SET synchronous_commit = off")
        cursor = connection.execute(
            "UPDATE users AS u SET kind = data.kind "
            f"FROM (VALUES {values}) AS data(kind, user_id) WHERE u.id = data.user_id::uuid",
            parameters,
        )
        return cursor.rowcount


def write_batches(dsn: str, changes: Sequence[tuple[str, str]]) -> int:
    """Write ``(user id, kind)`` pairs in batches of 1000 on 4 threads; returns rows updated."""
    batches = [changes[start : start + BATCH_SIZE] for start in range(0, len(changes), BATCH_SIZE)]
    with ThreadPoolExecutor(WORKERS) as pool:
        return sum(pool.map(lambda batch: _write_batch(dsn, batch), batches))
