"""ZLV's ``users`` table for tests, the demo and the benchmark, seeded from the Portail DF sample users.

On PostgreSQL the table is created as ZLV's knex migrations create it (``uuid`` id, ``varchar(255)`` strings,
``timestamptz`` timestamps, ``kind varchar NULL`` from ``20241128175635-users-add-kind``); on SQLite, used by the
demo, with the same columns in SQLite's types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import sqlalchemy as sa

from devkit.sandbox.portaildf import (
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

USERS_DDL_POSTGRESQL = """
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email varchar(255),
    password varchar(255) NOT NULL,
    first_name varchar(255),
    last_name varchar(255),
    establishment_id uuid,
    role integer NOT NULL DEFAULT 0,
    activated_at timestamptz,
    last_authenticated_at timestamptz,
    deleted_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    phone varchar(255),
    position varchar(255),
    time_per_week varchar(255),
    kind varchar(255)
)
"""

USERS_DDL_SQLITE = """
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT,
    password TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    establishment_id TEXT,
    role INTEGER NOT NULL DEFAULT 0,
    activated_at TEXT,
    last_authenticated_at TEXT,
    deleted_at TEXT,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    phone TEXT,
    position TEXT,
    time_per_week TEXT,
    kind TEXT
)
"""


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def seed_zlv(url: str, users: Iterable[SampleZlvUser]) -> sa.Engine:
    """Create ``users`` at ``url`` (replacing it) and fill it with ``users``; returns the engine."""
    engine = create_database_engine(url, SETTING)
    postgresql = is_postgresql(engine)
    rows = (
        {
            "id": user.id,
            "email": user.email,
            "password": PLACEHOLDER_PASSWORD,
            "deleted_at": user.deleted_at
            if postgresql or user.deleted_at is None
            else user.deleted_at.isoformat(),
            "kind": user.kind,
        }
        for user in users
    )
    insert = sa.text(
        "INSERT INTO users (id, email, password, deleted_at, kind) "
        + (
            "VALUES (CAST(:id AS uuid), :email, :password, :deleted_at, :kind)"
            if postgresql
            else "VALUES (:id, :email, :password, :deleted_at, :kind)"
        )
    )
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS users"))
        connection.execute(sa.text(USERS_DDL_POSTGRESQL if postgresql else USERS_DDL_SQLITE))
        for chunk in _chunks(rows, INSERT_CHUNK):
            connection.execute(insert, chunk)
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
