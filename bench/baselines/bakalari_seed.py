"""The seed's Bakaláři sync as it really behaves, for the benchmark to compare against.

What it models: the cron script (``ops/sync-cron.sh``) POSTs ``/api/sync/bakalari``; EduRPG's route
(``app/api/sync/bakalari/route.ts``) ignores the cron's Bearer header, loads the operator's ``"bakalariToken"``
(the one-hour *access* token EduRPG's login stored) and calls ``syncBakalariData``
(``app/lib/services/sync-bakalari.ts``), which

* logs ``sync_start``;
* "fetches" users and classes: both functions return ``[]`` without a request ("Bakalari API doesn't provide
  bulk user endpoints");
* fetches subjects: one ``GET /api/3/subjects`` with the stored token; the answer is ``{"Subjects": [...]}``,
  not the array the code expects, so it becomes ``[]`` (and once the stored token is an hour old the request is a
  401, which is caught and also becomes ``[]``);
* runs its transaction over the three empty lists, and logs ``sync_ok`` with every count at zero.

So one run costs one HTTP request and two ``"SystemLog"`` inserts, and syncs nothing. This module does exactly
that against the same sandbox and database the benchmark uses (the HTTP hop from the cron to the Next.js route
is left out: it only adds time).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
import sqlalchemy as sa

from sync_pipelines.defs.bakalari.edurpg import new_id, system_log, user, utc_now

COUNT_NAMES = [
    "classesCreated",
    "classesUpdated",
    "usersCreated",
    "usersUpdated",
    "subjectsCreated",
    "subjectsUpdated",
    "enrollmentsCreated",
    "enrollmentsUpdated",
]


def store_operator_login(engine: sa.Engine, bakalari_url: str, username: str, password: str) -> str:
    """What EduRPG's login leaves for the route: an OPERATOR user whose ``"bakalariToken"`` is an access token."""
    answer = httpx.post(
        f"{bakalari_url}/api/login",
        data={"client_id": "ANDR", "grant_type": "password", "username": username, "password": password},
        timeout=10,
    ).json()
    operator_id = new_id()
    with engine.begin() as connection:
        connection.execute(
            sa.insert(user),
            [
                {
                    "id": operator_id,
                    "email": "operator@edurpg.local",
                    "name": "Operator",
                    "role": "OPERATOR",
                    "bakalariId": answer["bak:UserId"],
                    "bakalariToken": answer["access_token"],
                    "updatedAt": utc_now(),
                }
            ],
        )
    return operator_id


def _log(engine: sa.Engine, level: str, message: str, operator_id: str, metadata: dict[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(system_log),
            [
                {
                    "id": new_id(),
                    "level": level,
                    "message": message,
                    "userId": operator_id,
                    "requestId": None,
                    "metadata": metadata,
                    "createdAt": utc_now(),
                }
            ],
        )


def run_seed_sync(engine: sa.Engine, bakalari_url: str, operator_id: str) -> dict[str, Any]:
    """One ``POST /api/sync/bakalari`` as EduRPG handles it; returns its ``SyncResult``, plus requests made."""
    with engine.connect() as connection:
        token = connection.execute(
            sa.select(user.c.bakalariToken).where(user.c.id == operator_id)
        ).scalar_one()
    run_id = str(uuid.uuid4())
    started = time.perf_counter()
    result: dict[str, Any] = {
        "success": False,
        **{name: 0 for name in COUNT_NAMES},
        "errors": [],
        "runId": run_id,
        "startedAt": datetime.now(timezone.utc).isoformat(),
    }
    _log(engine, "INFO", "sync_start", operator_id, {"runId": run_id, "operatorId": operator_id})
    users: list[Any] = []  # fetchBakalariUsers: no request, []
    classes: list[Any] = []  # fetchBakalariClasses: no request, []
    try:
        answer = httpx.get(
            f"{bakalari_url}/api/3/subjects", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        subjects = answer if isinstance(answer, list) else []  # {"Subjects": [...]} is not an array
    except (httpx.HTTPError, ValueError):
        subjects = []
    # The transaction loops over the three lists; with all of them empty it writes nothing.
    written = len(users) + len(classes) + len(subjects)
    result["durationMs"] = round((time.perf_counter() - started) * 1000)
    result["success"] = True
    _log(engine, "INFO", "sync_ok", operator_id, {"runId": run_id, "result": result})
    result["seconds"] = time.perf_counter() - started
    result["requests"] = 1
    result["rows_synced"] = written
    return result
