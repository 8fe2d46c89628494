"""EduRPG's database made by Prisma itself, and read back by Prisma's client, for tests.

``devkit/edurpg_prisma/`` is a small npm project: the project's own ``schema.prisma`` for EduRPG's data model,
the Prisma CLI (``db push`` through the WebAssembly schema engine and ``@prisma/adapter-pg``, configured in
``prisma.config.ts``) and a client generated with the JS "client" engine. Nothing needs Prisma's native engine
binaries, so it works with no internet beyond the npm registry. ``devkit/install/edurpg_prisma.sh`` installs it.

``build_edurpg_database(url)`` is ``prisma db push`` of every model (``with_external_ref=False``: without
``ExternalRef``, as EduRPG's committed migrations leave the database); ``read_back(url)`` runs
``read_back.mjs``: every model's ``findMany``, the relations, EduRPG's lookups, an update and a create on
synced rows (undone), and the synced rows as Prisma reads them (DateTime as ISO strings); ``login_upsert(url,
logins)`` runs ``login_upsert.mjs``: what EduRPG's login does to ``"User"`` (an upsert by ``bakalariId``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent / "edurpg_prisma"
INSTALL_SCRIPT = Path(__file__).resolve().parent / "install" / "edurpg_prisma.sh"
BUILD_TIMEOUT = 180  # seconds; a push of the whole schema takes 2-4 s
READ_BACK_TIMEOUT = 120
STDERR_TAIL = 2_000

# Whatever the environment holds, Prisma must not try to download engines or phone home.
OFFLINE_ENV = {
    "PRISMA_SKIP_POSTINSTALL_GENERATE": "1",
    "PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING": "1",
    "PRISMA_GENERATE_SKIP_AUTOINSTALL": "1",
    "PRISMA_HIDE_UPDATE_MESSAGE": "1",
    "CHECKPOINT_DISABLE": "1",
    "NO_COLOR": "1",
}


class PrismaError(RuntimeError):
    """A node script of devkit/edurpg_prisma failed; the message carries its stderr's tail."""


def node_binary() -> str | None:
    return shutil.which("node")


def missing_reason() -> str | None:
    """Why the Prisma harness cannot run here, or None when it can."""
    if node_binary() is None:
        return "Node.js (node) is not installed"
    if not (PROJECT / "node_modules" / "prisma" / "build" / "index.js").exists():
        return f"{PROJECT.name}'s npm packages are not installed: run {INSTALL_SCRIPT.relative_to(PROJECT.parents[1])}"
    if not (PROJECT / "generated" / "client" / "index.js").exists():
        return f"the Prisma client is not generated: run {INSTALL_SCRIPT.relative_to(PROJECT.parents[1])}"
    return None


def prisma_available() -> bool:
    return missing_reason() is None


def _run(script: str, args: list[str], timeout: float) -> str:
    reason = missing_reason()
    if reason:
        raise PrismaError(reason)
    command = [node_binary() or "node", str(PROJECT / script), *args]
    try:
        done = subprocess.run(
            command,
            cwd=PROJECT,
            env={**os.environ, **OFFLINE_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise PrismaError(f"{script} timed out after {timeout:g}s; stderr: {stderr[-STDERR_TAIL:]}") from None
    if done.returncode != 0:
        raise PrismaError(
            f"{script} exited {done.returncode}: {done.stderr.strip()[-STDERR_TAIL:] or done.stdout[-STDERR_TAIL:]}"
        )
    return done.stdout


def build_edurpg_database(url: str, with_external_ref: bool = True, *, force_reset: bool = False) -> dict:
    """``prisma db push`` of EduRPG's schema into the (normally empty) database at ``url``.

    ``with_external_ref=False`` leaves out the ``ExternalRef`` model, as EduRPG's committed migrations do.
    ``force_reset`` drops what the database's ``public`` schema holds first. Returns the script's JSON summary.
    """
    args = [url]
    if not with_external_ref:
        args.append("--without-external-ref")
    if force_reset:
        args.append("--force-reset")
    output = _run("build_db.mjs", args, BUILD_TIMEOUT)
    return json.loads(output.strip().splitlines()[-1])


def read_back(
    url: str, *, allow_missing_external_ref: bool = False, row_limit: int = 10_000
) -> dict[str, Any]:
    """What Prisma's client reads (and may write) in the database at ``url``; see read_back.mjs for the keys.

    Raises PrismaError when any model's ``findMany``, a relation, a lookup or a write fails. A missing
    ``ExternalRef`` table is an error unless ``allow_missing_external_ref`` (then it is listed in ``missing``).
    """
    args = [url, "--row-limit", str(row_limit)]
    if allow_missing_external_ref:
        args.append("--allow-missing-external-ref")
    output = _run("read_back.mjs", args, READ_BACK_TIMEOUT)
    try:
        return json.loads(output)
    except json.JSONDecodeError as exc:
        raise PrismaError(f"read_back.mjs printed no JSON ({exc}): {output[-STDERR_TAIL:]}") from None


def login_upsert(url: str, logins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EduRPG's login, as Prisma's client does it: ``user.upsert`` by ``bakalariId`` for each of ``logins``
    (``{bakalariId, name, role?, token?, email?}``). Returns ``[{bakalariId, id, created}]``, ``created`` when the
    login did not find an existing user (and made a second one)."""
    output = _run("login_upsert.mjs", [url, json.dumps(logins)], READ_BACK_TIMEOUT)
    return json.loads(output)
