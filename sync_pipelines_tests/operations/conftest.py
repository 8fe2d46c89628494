"""Fixtures of the end-to-end operations tests: databases that live as long as a module's deployment, every sync
job's world under one webserver+daemon deployment (the web UI tests), and the webserver/daemon logs printed under
any failing test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devkit.postgres import PostgresServer
from sync_pipelines_tests.operations.dagster_processes import ACTIVE, DagsterProcesses, running_deployment
from sync_pipelines_tests.operations.sync_worlds import WORLDS, SyncWorld


@pytest.fixture(scope="module")
def new_database(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL databases for one module (its deployment's storage, the sync state, the systems)."""
    created: list[str] = []

    def make() -> str:
        name = postgres_server.create_database()
        created.append(name)
        return postgres_server.url(name)

    yield make
    for name in created:
        postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def worlds(new_database: Callable[[], str]) -> Iterator[dict[str, SyncWorld]]:
    with contextlib.ExitStack() as stack:
        yield {job: make(new_database, stack) for job, make in WORLDS.items()}


@pytest.fixture(scope="module")
def deployment(
    worlds: dict[str, SyncWorld], new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterProcesses]:
    env = {"SYNC_STATE_DATABASE_URL": new_database()}
    for world in worlds.values():
        env.update(world.env)
    home = Path(tmp_path_factory.mktemp("web_ui")) / "dagster_home"
    with running_deployment(home, new_database(), env) as processes:
        yield processes


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def dagster_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for processes in ACTIVE:
            print(processes.log_tails(8000))
