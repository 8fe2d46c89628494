"""Session-wide fixtures: one real PostgreSQL server, a fresh database per test, a private DAGSTER_HOME.

Under pytest-xdist each worker is its own session: it starts its own PostgreSQL server (own temporary directory,
port from the OS) and stops it when its session ends. Every test carries exactly one tier marker (``unit``,
``integration``, ``e2e``, see pyproject.toml): ``pytest_collection_modifyitems`` refuses to collect one that
does not, so ``-m "unit or integration"`` never silently leaves a test out of every tier; it also puts the modules
with end-to-end tests first, so the slowest start first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from devkit.postgres import PostgresServer

TIERS = ("unit", "integration", "e2e")
RUN_FIRST = ("e2e", "integration", "unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one tier marker ({', '.join(TIERS)}); these do not:\n  "
            + "\n  ".join(wrong)
        )
    # Modules holding end-to-end tests first (their order otherwise kept, each module's tests together): under
    # ``./dev test`` (xdist ``--dist loadfile --no-loadscope-reorder``) the long webserver/daemon and CLI modules
    # then start early and overlap the many short ones, instead of being handed out last and running alone.
    heaviest: dict[Path, int] = {}
    for item in items:
        [tier] = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        heaviest[item.path] = min(heaviest.get(item.path, len(TIERS)), RUN_FIRST.index(tier))
    items.sort(key=lambda item: heaviest[item.path])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, as a driverless ``postgresql://`` URL."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def make_pg_url(postgres_server: PostgresServer) -> Iterator:
    """Several fresh databases in one test (e.g. the source and the sync state)."""
    created: list[str] = []

    def make() -> str:
        name = postgres_server.create_database()
        created.append(name)
        return postgres_server.url(name)

    yield make
    for name in created:
        postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@pytest.fixture(autouse=True)
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own DAGSTER_HOME, so the default sync state SQLite file never leaks between tests."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("SYNC_STATE_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def ephemeral_instance() -> Iterator[dg.DagsterInstance]:
    """An in-memory Dagster instance for several runs of one test, disposed at its end (its storage holds a SQLite
    connection that would otherwise be closed only at the interpreter's exit)."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance
