"""docker compose only: build the PostgreSQL URLs from deploy/.env's parts, then run the service's command.

A password is pasted into a URL as it is by compose's variable substitution, which breaks on ``@``, ``:``,
``/`` or ``%``. Here each part is URL-encoded instead. A URL already given (``SYNC_STATE_DATABASE_URL`` in
deploy/.env) is kept.
"""

import os
import sys
from urllib.parse import quote


def postgres_url(database: str) -> str:
    user = quote(os.environ.get("POSTGRES_USER") or "dagster", safe="")
    password = quote(os.environ["POSTGRES_PASSWORD"], safe="")
    host = os.environ.get("POSTGRES_HOST") or "postgres"
    return f"postgresql://{user}:{password}@{host}:5432/{quote(database, safe='')}"


def main() -> None:
    if os.environ.get("POSTGRES_PASSWORD"):
        if not os.environ.get("DAGSTER_POSTGRES_URL"):
            os.environ["DAGSTER_POSTGRES_URL"] = postgres_url(os.environ.get("POSTGRES_DB") or "dagster")
        if not os.environ.get("SYNC_STATE_DATABASE_URL"):
            os.environ["SYNC_STATE_DATABASE_URL"] = postgres_url("sync_state")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
