"""docker compose only: read the secrets compose mounts as files, build the PostgreSQL URLs from their parts, then
run the service's command.

Secrets come as files under /run/secrets (compose's ``secrets:``), named by ``<NAME>_FILE`` variables, which
``sync_pipelines.core.secret_files`` reads into the environment of this process (webserver and daemon never
import the project otherwise). A password is pasted into a URL as it is by compose's variable substitution, which
breaks on ``@``, ``:``, ``/`` or ``%``. Here each part is URL-encoded instead. A URL already given
(``SYNC_STATE_DATABASE_URL`` in deploy/.env or its file) is kept.
"""

import os
import sys
from urllib.parse import quote

from sync_pipelines.core.secret_files import load_secret_files


def postgres_url(database: str) -> str:
    user = quote(os.environ.get("POSTGRES_USER") or "dagster", safe="")
    password = quote(os.environ["POSTGRES_PASSWORD"], safe="")
    host = os.environ.get("POSTGRES_HOST") or "postgres"
    return f"postgresql://{user}:{password}@{host}:5432/{quote(database, safe='')}"


def main() -> None:
    for problem in load_secret_files():
        print(f"compose_env: {problem}", file=sys.stderr)
    if os.environ.get("POSTGRES_PASSWORD"):
        if not os.environ.get("DAGSTER_POSTGRES_URL"):
            os.environ["DAGSTER_POSTGRES_URL"] = postgres_url(os.environ.get("POSTGRES_DB") or "dagster")
        if not os.environ.get("SYNC_STATE_DATABASE_URL"):
            os.environ["SYNC_STATE_DATABASE_URL"] = postgres_url("sync_state")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
