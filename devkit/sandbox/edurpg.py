"""EduRPG's database for tests, the demo and the benchmark: EduRPG's schema, seeded as students leave it.

On PostgreSQL the schema is made by Prisma itself (``devkit.prisma.build_edurpg_database``: ``prisma db push`` of
the project's copy of EduRPG's ``schema.prisma``, all 17 models, with or without ``"ExternalRef"``). Pushing takes
seconds, so it is done once per server and variant, into a template database (``edurpg_tmpl_*``); each database
is then a copy of it (``CREATE DATABASE ... TEMPLATE``), which takes milliseconds. Needs Node.js and
``devkit/install/edurpg_prisma.sh`` (``./dev setup`` runs it).

On SQLite (the demo only: Prisma's harness is PostgreSQL-only) the sync's own table objects are created with
SQLAlchemy's ``metadata.create_all`` (``"User"``, ``"Class"``, ``"Subject"``, ``"Enrollment"``, ``"ExternalRef"``,
``"SystemLog"``, ``"XPAudit"``, with the unique indexes the sync relies on). That is a stand-in for the demo, not
EduRPG's schema: tests of the schema itself use PostgreSQL.

``seed_edurpg`` writes the state EduRPG is in after the sample school's students logged in: one ``"User"`` row per
student with ``"bakalariId"`` and, in ``"bakalariToken"``, their Bakaláři refresh token (or, with ``tokens``,
whatever EduRPG stored: e.g. the access tokens its login keeps today).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from devkit.prisma import PrismaError, build_edurpg_database, missing_reason
from devkit.sandbox.bakalari import (
    OPERATOR_PASSWORD,
    OPERATOR_USERNAME,
    SampleSchool,
    generate_school,
)
from devkit.sandbox.server import DemoSetup, SandboxProcess
from sync_pipelines.core.database import create_database_engine, is_postgresql
from sync_pipelines.defs.bakalari.edurpg import (
    SETTING,
    klass,
    metadata,
    new_id,
    system_log,
    user,
    utc_now,
    xp_audit,
)

INSERT_CHUNK = 5_000
DEMO_SEED = 7  # the seed ``python -m devkit.sandbox bakalari`` uses by default
TEMPLATE_PREFIX = "edurpg_tmpl"

_templates: dict[tuple[str, bool], str] = {}
_templates_lock = threading.Lock()


def _admin_dsn(url: str) -> tuple[str, str]:
    """(libpq DSN of the server's ``postgres`` database, the database name of ``url``)."""
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError("the PostgreSQL URL names no database")
    admin = parsed.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), parsed.database


def _exists(connection: psycopg.Connection, name: str) -> bool:
    return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _template(url: str, with_external_ref: bool) -> str:
    """The name of this server's template database of EduRPG's Prisma schema, built on first use."""
    admin, _ = _admin_dsn(url)
    parsed = make_url(url)
    key = (f"{parsed.host}:{parsed.port}", with_external_ref)
    with _templates_lock:
        name = _templates.get(key)
        with psycopg.connect(admin, autocommit=True) as connection:
            if name is not None and _exists(connection, name):
                return name
            name = f"{TEMPLATE_PREFIX}_{'ref' if with_external_ref else 'noref'}_{os.getpid()}"
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            build_edurpg_database(
                parsed.set(drivername="postgresql", database=name).render_as_string(hide_password=False),
                with_external_ref,
            )
        except PrismaError:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            raise
        _templates[key] = name
        return name


def create_prisma_schema(url: str, *, with_external_ref: bool = True) -> Engine:
    """Make ``url``'s PostgreSQL database a fresh copy of EduRPG's Prisma-built schema (whatever it held is gone).

    ``with_external_ref=False``: without ``"ExternalRef"``, as EduRPG's committed migrations leave it."""
    reason = missing_reason()
    if reason:
        raise PrismaError(f"EduRPG's schema on PostgreSQL is made by Prisma: {reason}")
    template = _template(url, with_external_ref)
    admin, name = _admin_dsn(url)
    for attempt in range(20):
        try:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            break
        except psycopg.errors.ObjectInUse:  # the template's last session (Prisma's) is still closing
            if attempt == 19:
                raise
            time.sleep(0.1)
    return create_database_engine(url, SETTING)


def create_demo_schema(url: str) -> Engine:
    """The demo's SQLite stand-in: the sync's table objects, replacing any that exist (see the module doc)."""
    engine = create_database_engine(url, SETTING)
    if is_postgresql(engine):
        raise ValueError("create_demo_schema is the SQLite demo's; PostgreSQL gets Prisma's schema")
    metadata.drop_all(engine)
    metadata.create_all(engine)
    return engine


def create_schema(url: str, *, with_external_ref: bool = True) -> Engine:
    """EduRPG's tables at ``url``: Prisma's schema on PostgreSQL, the demo's stand-in on SQLite."""
    if make_url(url).get_backend_name() in ("postgresql", "postgres"):
        return create_prisma_schema(url, with_external_ref=with_external_ref)
    return create_demo_schema(url)


def seed_edurpg(
    url: str,
    school: SampleSchool,
    *,
    login_classes: bool = False,
    xp_per_student: int = 1,
    tokens: Mapping[str, str | None] | None = None,
    bakalari_id_prefix: str | None = None,
    with_external_ref: bool = True,
) -> Engine:
    """Create the schema and the rows EduRPG holds once the school's students have logged in.

    Each student gets a ``"User"`` row (``email`` ``<bakalariId>@bakalari.local``, role STUDENT) with their
    refresh token in ``"bakalariToken"`` (``tokens``: the token stored per Bakaláři user id instead, e.g. access
    tokens from ``BakalariSandbox.login_access_token``; None leaves it empty) and ``xp_per_student`` ``"XPAudit"``
    rows of game history. ``bakalari_id_prefix``: ``"bakalariId"`` as ``<prefix>/<id>`` (a server whose
    ``UserUID`` carries a prefix). With ``login_classes`` the students' classes exist too, as EduRPG's login
    creates them (a ``"Class"`` named by the abbreviation, no ``"ExternalRef"``), and students point at them.
    Timestamps are set as Prisma's client sets them (both, in UTC).
    """
    engine = create_schema(url, with_external_ref=with_external_ref)
    now = utc_now()
    class_ids: dict[str, str] = {}
    if login_classes:
        class_rows = []
        for cls in school.classes:
            class_ids[cls.id] = new_id()
            class_rows.append(
                {
                    "id": class_ids[cls.id],
                    "name": cls.abbrev,
                    "grade": cls.grade,
                    "createdAt": now,
                    "updatedAt": now,
                }
            )
        with engine.begin() as connection:
            connection.execute(sa.insert(klass), class_rows)
    users, history = [], []
    for student in school.students:
        user_id = new_id()
        bakalari_id = f"{bakalari_id_prefix}/{student.user_id}" if bakalari_id_prefix else student.user_id
        token = tokens.get(student.user_id) if tokens is not None else student.refresh_token
        users.append(
            {
                "id": user_id,
                "email": f"{bakalari_id}@bakalari.local",
                "name": student.full_name,
                "role": "STUDENT",
                "classId": class_ids.get(student.class_id),
                "bakalariId": bakalari_id,
                "bakalariToken": token,
                "createdAt": now,
                "updatedAt": now,
            }
        )
        history += [
            {
                "id": new_id(),
                "userId": user_id,
                "amount": 10 * (n + 1),
                "reason": "Úkol odevzdán",
                "createdAt": now,
            }
            for n in range(xp_per_student)
        ]
    with engine.begin() as connection:
        for table, rows in ((user, users), (xp_audit, history)):
            for start in range(0, len(rows), INSERT_CHUNK):
                connection.execute(sa.insert(table), rows[start : start + INSERT_CHUNK])
    return engine


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per EduRPG table, for tests and the benchmark."""
    names = ["Class", "Subject", "User", "Enrollment", "ExternalRef", "SystemLog", "XPAudit"]
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one() for name in names
        }


def system_log_messages(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(system_log.c.level, system_log.c.message).order_by(system_log.c.createdAt)
        )
        return [(row.level, row.message) for row in rows]


def demo_setup(home: Path, size: int) -> DemoSetup:
    """A Bakaláři sandbox (started) holding the sample school and a SQLite EduRPG whose students logged in with it."""
    edurpg_url = f"sqlite:///{home / 'edurpg.sqlite'}"
    seed_edurpg(edurpg_url, generate_school(size, DEMO_SEED), login_classes=True)
    bakalari = SandboxProcess(
        "bakalari", ["--size", str(size), "--seed", str(DEMO_SEED), "--latency-ms", "5"]
    )
    bakalari.start()  # before its URL goes into the environment: start() may move it to another port
    return DemoSetup(
        [bakalari],
        {
            "BAKALARI_URL": bakalari.url,
            "BAKALARI_USERNAME": OPERATOR_USERNAME,
            "BAKALARI_PASSWORD": OPERATOR_PASSWORD,
            "EDURPG_DATABASE_URL": edurpg_url,
        },
    )
