"""ZLV's ``users`` table for tests, the demo and the benchmark, seeded from the Portail DF sample users.

The table is written as ZLV's knex migrations leave it: ``id uuid``, ``email varchar(255) NOT NULL`` with a
case-sensitive unique constraint (one empty ``''`` can exist, NULL cannot), a nullable ``password`` and names,
``deleted_at`` (soft delete), ``updated_at NOT NULL DEFAULT CURRENT_TIMESTAMP`` (no trigger: ZLV's app sets it on
each write), ``kind varchar(255) NULL`` (``20241128175635-users-add-kind``), ``suspended_at`` /
``suspended_cause``, the two-factor columns, and tables holding foreign keys to ``users(id)`` (``auth_users`` with
ON DELETE CASCADE, ``users_establishments``, ``campaigns``, ``events``, ``notes``), so a sync that deleted or
re-created users would meet them. The system admin a migration inserts is one of the sample's users
(``ADMIN_EMAIL``, empty password). SQLite, used by the demo, gets the same columns in its types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import sqlalchemy as sa

from devkit.sandbox.portaildf import (
    ADMIN_EMAIL,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SampleZlvUser,
    generate_portaildf_sample,
)
from devkit.sandbox.server import DemoSetup, SandboxProcess
from sync_pipelines.core.database import create_database_engine, is_postgresql

SETTING = "ZLV_DATABASE_URL"
PLACEHOLDER_PASSWORD = "$2b$10$sandboxsandboxsandboxsandboxsandboxsandboxsandboxsa"
INSERT_CHUNK = 10_000
REFERRING_TABLES = ("notes", "events", "campaigns", "users_establishments", "auth_users")


def _users_ddl(uuid: str, text: str, moment: str, now: str) -> str:
    return f"""
CREATE TABLE users (
    id {uuid} PRIMARY KEY,
    email {text} NOT NULL,
    password {text},
    first_name {text},
    last_name {text},
    establishment_id {uuid},
    role integer NOT NULL DEFAULT 0,
    activated_at {moment},
    last_authenticated_at {moment},
    deleted_at {moment},
    updated_at {moment} NOT NULL DEFAULT {now},
    phone {text},
    position {text},
    time_per_week {text},
    kind {text},
    suspended_at {moment},
    suspended_cause {text},
    two_factor_code {text},
    two_factor_code_generated_at {moment},
    two_factor_failed_attempts integer NOT NULL DEFAULT 0,
    two_factor_locked_until {moment},
    CONSTRAINT users_email_unique UNIQUE (email)
)
"""


def _referring_ddl(uuid: str) -> list[str]:
    return [
        f"CREATE TABLE auth_users (id {uuid} PRIMARY KEY, "
        f"user_id {uuid} NOT NULL REFERENCES users(id) ON DELETE CASCADE)",
        f"CREATE TABLE users_establishments (user_id {uuid} NOT NULL REFERENCES users(id), "
        f"establishment_id {uuid} NOT NULL)",
        f"CREATE TABLE campaigns (id {uuid} PRIMARY KEY, created_by {uuid} REFERENCES users(id))",
        f"CREATE TABLE events (id {uuid} PRIMARY KEY, created_by {uuid} REFERENCES users(id))",
        f"CREATE TABLE notes (id {uuid} PRIMARY KEY, created_by {uuid} REFERENCES users(id))",
    ]


USERS_DDL_POSTGRESQL = _users_ddl("uuid", "varchar(255)", "timestamptz", "CURRENT_TIMESTAMP")
USERS_DDL_SQLITE = _users_ddl("TEXT", "TEXT", "TEXT", "CURRENT_TIMESTAMP")


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def seed_zlv(url: str, users: Iterable[SampleZlvUser]) -> sa.Engine:
    """Create ``users`` and the tables referring to it at ``url`` (replacing them) and fill ``users`` with
    ``users``, the first of them owning a row in each referring table; returns the engine."""
    engine = create_database_engine(url, SETTING)
    postgresql = is_postgresql(engine)
    rows = (
        {
            "id": user.id,
            "email": user.email if user.email is not None else "",
            "password": "" if user.email == ADMIN_EMAIL else PLACEHOLDER_PASSWORD,
            "deleted_at": user.deleted_at
            if postgresql or user.deleted_at is None
            else user.deleted_at.isoformat(),
            "kind": user.kind,
        }
        for user in users
    )
    cast = "CAST(:id AS uuid)" if postgresql else ":id"
    insert = sa.text(
        f"INSERT INTO users (id, email, password, deleted_at, kind) VALUES ({cast}, :email, :password, "
        ":deleted_at, :kind)"
    )
    uuid = "uuid" if postgresql else "TEXT"
    with engine.begin() as connection:
        for table in (*REFERRING_TABLES, "users"):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        connection.execute(sa.text(USERS_DDL_POSTGRESQL if postgresql else USERS_DDL_SQLITE))
        for statement in _referring_ddl(uuid):
            connection.execute(sa.text(statement))
        first = None
        for chunk in _chunks(rows, INSERT_CHUNK):
            connection.execute(insert, chunk)
            first = first or chunk[0]["id"]
        if first is not None:
            owner = {"owner": first, "other": "00000000-0000-4000-8000-000000000001"}
            other = "CAST(:other AS uuid)" if postgresql else ":other"
            owned = "CAST(:owner AS uuid)" if postgresql else ":owner"
            connection.execute(sa.text(f"INSERT INTO auth_users VALUES ({other}, {owned})"), owner)
            connection.execute(sa.text(f"INSERT INTO users_establishments VALUES ({owned}, {other})"), owner)
            for table in ("campaigns", "events", "notes"):
                connection.execute(sa.text(f"INSERT INTO {table} VALUES ({other}, {owned})"), owner)
    return engine


def demo_setup(home: Path, size: int) -> DemoSetup:
    """A Portail DF sandbox (v2 auth, started) and a SQLite ZLV database holding the same sample's users."""
    zlv_url = f"sqlite:///{home / 'zlv.sqlite'}"
    seed_zlv(zlv_url, generate_portaildf_sample(size).users)
    portaildf = SandboxProcess("portaildf", ["--size", str(size), "--latency-ms", "5"])
    portaildf.start()  # before its URL goes into the environment: start() may move it to another port
    return DemoSetup(
        [portaildf],
        {
            "ZLV_DATABASE_URL": zlv_url,
            "PORTAILDF_API_URL": f"{portaildf.url}/api",
            "PORTAILDF_USERNAME": DEFAULT_USERNAME,
            "PORTAILDF_PASSWORD": DEFAULT_PASSWORD,
            "PORTAILDF_AUTH_VERSION": "v2",
        },
    )
