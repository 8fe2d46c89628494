"""Secrets given as files: ``NAME_FILE`` names a file whose content is the value of the secret setting ``NAME``.

Docker compose's and Swarm's ``secrets:``, Kubernetes' secret volumes and systemd's credentials hand a secret to
a process as a file, which ``docker inspect`` and ``/proc/<pid>/environ`` of the service's own process do not
show. ``load_secret_files`` reads each such file once, at start, into the environment (the settings are read from
there at run time, as before, and the run workers inherit them). The file's content is taken whole, without its
trailing newline. Only the settings listed in ``SECRET_SETTINGS`` are read so, so an unrelated ``*_FILE``
variable (``SSL_CERT_FILE``) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

FILE_SUFFIX = "_FILE"
# Every setting that holds a secret (README, "Environment variables"): credentials, and the URLs of databases and
# webhooks, whose user-info holds a password.
SECRET_SETTINGS = (
    "STUDENTS_DATABASE_URL",
    "RT_TOKEN",
    "BAKALARI_USERNAME",
    "BAKALARI_PASSWORD",
    "EDURPG_DATABASE_URL",
    "PORTAILDF_USERNAME",
    "PORTAILDF_PASSWORD",
    "ZLV_DATABASE_URL",
    "SYNC_STATE_DATABASE_URL",
    "SYNC_ALERT_WEBHOOK_URL",
    "DAGSTER_POSTGRES_URL",
    "POSTGRES_PASSWORD",
)


def load_secret_files(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set each ``NAME`` of ``SECRET_SETTINGS`` whose ``NAME_FILE`` is set to that file's content. Returns the
    problems, one line each naming the variable to fix (the setting then stays unset, and what needs it says so):
    a file that cannot be read, or ``NAME`` set as well to another value."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    for name in SECRET_SETTINGS:
        variable = name + FILE_SUFFIX
        path = environ.get(variable, "").strip()
        if not path:
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            problems.append(f"{variable}: cannot read {path} ({reason}); check the file and its permissions")
            continue
        # Set already to the file's content: a process started by one that read the file (a run worker).
        if environ.get(name, "").strip() and environ[name] != value:
            problems.append(f"{variable}: {name} is set as well, to another value; set only one of them")
            continue
        if value:
            environ[name] = value
    return problems
