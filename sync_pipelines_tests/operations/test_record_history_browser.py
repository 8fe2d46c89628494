"""Record history in the web UI, as support staff use it: the user kinds sync runs, a ``record_history`` run is
launched for one of its users through the webserver, and its run page is read in headless Chromium: the history
table and the "now" table open from the step's Markdown metadata ("[Show Markdown]", clicked), with the sync's run
linked; the sync asset's page says how to ask."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipelines.core.database import create_database_engine
from sync_pipelines_tests.harness.browser import chromium_path, render
from sync_pipelines_tests.harness.browser_session import BrowserSession
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses
from sync_pipelines_tests.operations.sync_worlds import SyncWorld

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        chromium_path() is None,
        reason="Chromium is not installed (./dev setup installs Debian's chromium package; it needs root or sudo)",
    ),
]

JOB, ASSET = "user_kind_sync", "user_kinds"
MARKDOWN = "[Show Markdown]"


def kind_of(world: SyncWorld, user_id: str) -> str | None:
    engine = create_database_engine(world.databases["zlv"], "ZLV_DATABASE_URL")
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT kind FROM users WHERE id = :id"), {"id": user_id}).scalar()


def test_the_record_history_run_page_shows_the_table_with_the_run_linked(
    deployment: DagsterProcesses, worlds: dict[str, SyncWorld]
) -> None:
    ui, world = deployment.ui, worlds[JOB]
    user = sorted(world.stale())[0]
    synced = ui.launch(JOB)
    ui.wait_for_success(synced)
    asked = ui.launch(
        "record_history",
        run_config={"ops": {"record_lookup": {"config": {"system": "user_kinds", "record": user}}}},
    )
    ui.wait_for_success(asked)

    url = f"{deployment.url}/runs/{asked}"
    with BrowserSession() as browser:
        tab = browser.open(url)
        shown = browser.wait_for_text(tab, url, "Success", MARKDOWN, f"ZLV user {user}")
        print(f"----- {url}: shown text -----\n{shown.text}")  # the page as read, under a failing assert
        assert f"Runs / {asked[:8]}" in shown.text.splitlines()
        assert f"ZLV user {user}" in shown.text  # the record, by id
        assert browser.click_in_row(tab, "history", MARKDOWN), "no [Show Markdown] beside 'history'"
        table = browser.wait_for_text(tab, url, synced[:8], "applied")
        print(f"----- the history table -----\n{table.text}")
        lines = table.text.splitlines()
        # One row: when, the run (a link to its page), its kind, the record, the field, old -> new, the outcome.
        assert {"when (UTC)", "run", "kind", "record", "field", "old -> new", "outcome"} <= set(lines)
        assert {synced[:8], "sync", f"ZLV user {user}", "kind", "applied"} <= set(lines)
        assert f'href="/runs/{synced}"' in table.dom
        assert any(line.endswith(f"-> {kind_of(world, user)}") for line in lines)

    with BrowserSession() as browser:
        tab = browser.open(url)
        browser.wait_for_text(tab, url, "Success", MARKDOWN)
        assert browser.click_in_row(tab, "now", MARKDOWN), "no [Show Markdown] beside 'now'"
        now = browser.wait_for_text(tab, url, "why they differ", "in step")
        print(f"----- the now table -----\n{now.text}")
        assert {"user_kinds holds now", "the source wants now", "why they differ", "in step"} <= set(
            now.text.splitlines()
        )


def test_the_sync_asset_page_says_how_to_ask(deployment: DagsterProcesses) -> None:
    shown = render(f"{deployment.url}/assets/{ASSET}", wait_for=["python -m sync_pipelines.history"])
    assert "python -m sync_pipelines.history user_kinds <record>" in shown.text
    assert "a ZLV user id or e-mail" in shown.text
