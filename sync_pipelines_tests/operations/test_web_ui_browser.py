"""The web UI as a person sees it: the RT sync's dry run, the apply of its plan, the undo of that apply, a later dry
run and a run that fails, launched through the webserver's GraphQL API, then the asset's pages, the runs list and
each run's page rendered in headless Chromium and their shown text read. Then record history, as support staff
use it: the user kinds sync runs, a ``record_history`` run is launched for one of its users, and its run page is
read: the history table and the "now" table open from the step's Markdown metadata ("[Show Markdown]", clicked),
with the sync's run linked; the sync asset's page says how to ask. One deployment serves both.

What a page should show is asserted as text in ``page.text``; the text is printed under a failing assert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from devkit.sandbox.server import free_port
from sync_pipelines.core.database import create_database_engine
from sync_pipelines_tests.harness.browser import RenderedPage, chromium_path, render
from sync_pipelines_tests.harness.browser_session import BrowserSession
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses
from sync_pipelines_tests.operations.graphql_api import tag_map
from sync_pipelines_tests.operations.sync_worlds import SyncWorld

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        chromium_path() is None,
        reason="Chromium is not installed (./dev setup installs Debian's chromium package; it needs root or sudo)",
    ),
]

JOB, UNDO_JOB, ASSET = "rt_user_sync", "rt_user_sync_undo", "rt_user_custom_fields"
RUN_TOTALS = ["created", "updated", "failed", "unchanged", "skipped"]


@dataclass(frozen=True)
class ShownRun:
    """One run: its id, job, tags and run summary as the GraphQL API holds them."""

    run_id: str
    job: str
    tags: dict[str, str]
    summary: dict[str, Any]


def config(**values: Any) -> dict[str, Any]:
    return {"ops": {ASSET: {"config": values}}}


def shown_run(deployment: DagsterProcesses, run_id: str) -> ShownRun:
    run = deployment.ui.run(run_id)
    summaries = [o["metadata"] for o in deployment.ui.observations(ASSET, run_id)]
    return ShownRun(run_id, run["pipelineName"], tag_map(run["tags"]), summaries[0] if summaries else {})


@pytest.fixture(scope="module")
def runs(deployment: DagsterProcesses, worlds: dict[str, SyncWorld]) -> dict[str, ShownRun]:
    """A dry run, the apply of its plan, the undo (applied) of that apply and a later dry run, each waited for."""
    ui, world = deployment.ui, worlds[JOB]
    stale = world.stale()
    assert stale
    launched = {"dry run": ui.launch(JOB, run_config=config(dry_run=True))}
    ui.wait_for_success(launched["dry run"])
    assert world.stale() == stale  # a dry run writes nothing
    launched["apply"] = ui.launch(JOB, run_config=config(apply_plan_id=launched["dry run"]))
    ui.wait_for_success(launched["apply"])
    assert world.stale() == set()
    undo_config = {"run_id": launched["apply"], "dry_run": False}
    launched["undo"] = ui.launch(UNDO_JOB, run_config={"ops": {f"{ASSET}_undo": {"config": undo_config}}})
    ui.wait_for_success(launched["undo"])
    assert world.stale() == stale
    launched["later dry run"] = ui.launch(JOB, run_config=config(dry_run=True))
    ui.wait_for_success(launched["later dry run"])
    return {name: shown_run(deployment, run_id) for name, run_id in launched.items()}


@pytest.fixture(scope="module")
def overview(deployment: DagsterProcesses, runs: dict[str, ShownRun]) -> RenderedPage:
    """The RT asset's Overview after the undo and the later dry run (before the failed run, whose failed attempt
    the Overview's status would show)."""
    return page(deployment, f"/assets/{ASSET}", "Latest materialization", "undo_of", runs["undo"].run_id[:8])


@pytest.fixture(scope="module")
def failed(deployment: DagsterProcesses, runs: dict[str, ShownRun], overview: RenderedPage) -> ShownRun:
    """A run whose RT URL, typed into the launchpad's resource config, answers nothing."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    run_id = deployment.ui.launch(
        JOB,
        run_config={
            **config(),
            # As the launchpad holds it: the URL typed in, the token still from its variable.
            "resources": {
                "request_tracker": {
                    "config": {"url": nowhere, "token": {"env": "RT_TOKEN"}, "max_attempts": 1}
                }
            },
        },
    )
    assert deployment.ui.wait_for_run(run_id)["status"] == "FAILURE"
    return shown_run(deployment, run_id)


def page(deployment: DagsterProcesses, path: str, *wait_for: str) -> RenderedPage:
    rendered = render(f"{deployment.url}{path}", wait_for=wait_for)
    print(f"----- {path}: shown text -----\n{rendered.text}")  # the page as read, under a failing assert
    return rendered


def metadata_rows(lines: list[str]) -> dict[str, str]:
    """The Overview's metadata table, key -> value, in the order shown (each row is shown as its key, the time
    of the event it comes from, and its value)."""
    start = lines.index("Metadata")
    header = lines.index("Value", start)
    rows: dict[str, str] = {}
    index = header + 1
    while index + 2 < len(lines) and lines[index] not in ("Lineage", "Definition"):
        rows[lines[index]] = lines[index + 2]
        index += 3
    return rows


def test_after_undo_and_a_dry_run_the_overview_shows_the_undo_with_its_totals_first(
    runs: dict[str, ShownRun], overview: RenderedPage
) -> None:
    """The undo changed RT, so it is the asset's latest materialization; the later dry run changed nothing and
    is not. The Overview's metadata starts with the undo's totals, under the plain names."""
    lines = overview.text.splitlines()
    assert ASSET in lines and "Latest materialization" in lines
    assert "RT users' Grade and Student ID custom fields" in overview.text
    # The status links the latest materialization's run: the undo's.
    assert f"/runs/{runs['undo'].run_id}" in overview.dom
    assert f"/runs/{runs['apply'].run_id}" not in overview.dom
    rows = metadata_rows(lines)
    assert list(rows)[: len(RUN_TOTALS)] == RUN_TOTALS, rows
    assert rows["updated"] == str(runs["undo"].summary["updated"])
    assert runs["undo"].summary["updated"] == runs["apply"].summary["updated"] > 0
    # What the materialization is: the undo of the apply, not the apply, nor the later dry run's plan.
    assert rows["undo_of"] == runs["apply"].run_id
    assert rows["fields_restored"] == str(runs["undo"].summary["fields_restored"])
    assert "plan_id" not in rows and runs["later dry run"].run_id not in overview.text


def test_the_rt_assets_checks_tab_lists_its_prerequisite_and_its_row_errors_check(
    deployment: DagsterProcesses, runs: dict[str, ShownRun]
) -> None:
    shown = page(deployment, f"/assets/{ASSET}?view=checks", "rt_custom_fields_exist", "records_synced")
    lines = shown.text.splitlines()
    assert "rt_custom_fields_exist" in lines and "records_synced" in lines
    assert "rt_matches_students" in lines
    # The students asset no longer carries RT's prerequisite.
    students = page(deployment, "/assets/students?view=checks", "students_unique_ids")
    assert "students_unique_ids" in students.text
    assert "rt_custom_fields_exist" not in students.text


def test_the_failed_runs_page_shows_the_one_line_cause_naming_the_resource_config(
    deployment: DagsterProcesses, failed: ShownRun
) -> None:
    """The cause is the first line of the step's and the run's failure rows, naming where the bad URL came from.
    Dagster prints its own frames below it ("Stack Trace"): the README says why they cannot be left out."""
    shown = page(deployment, f"/runs/{failed.run_id}", "RUN_FAILURE", "could not be reached")
    lines = shown.text.splitlines()
    step = lines[lines.index("STEP_FAILURE") :]
    cause = step[1]
    assert cause.startswith("dagster._core.definitions.events.Failure: RT "), step[:4]
    assert "RT could not be reached at http://127.0.0.1:" in cause
    assert cause.endswith(
        "(connection refused); check the run's resource config (resources.request_tracker.config.url; RT_URL is "
        "not used)"
    ), cause
    run = lines[lines.index("RUN_FAILURE") :]
    assert run[1] == f"Execution of run for \"{JOB}\" failed. Steps failed: ['{ASSET}'].", run[:4]
    assert run[2] == cause, run[:4]
    assert run[3] == "Stack Trace:", run[:4]  # Dagster's frames, after the line


def run_rows(text: str, runs: list[ShownRun]) -> dict[str, list[str]]:
    """The runs list's rows of ``runs``: from each run's short id to its row's "View" link."""
    lines = text.splitlines()
    rows = {}
    for run in runs:
        start = lines.index(run.run_id[:8])
        rows[run.run_id] = lines[start : lines.index("View", start)]
    return rows


def test_the_runs_list_labels_each_dry_run(
    deployment: DagsterProcesses, runs: dict[str, ShownRun], failed: ShownRun
) -> None:
    shown = page(deployment, "/runs", failed.run_id[:8], runs["dry run"].run_id[:8])
    rows = run_rows(shown.text, [*runs.values(), failed])
    for name, run in runs.items():
        assert ("sync/dry_run: true" in rows[run.run_id]) == ("dry run" in name), (name, rows[run.run_id])
    assert "sync/dry_run: true" not in rows[failed.run_id]


def observed(shown: RenderedPage, name: str) -> str:
    """The value the run page shows under metadata entry ``name`` of the run's summary (its asset observation)."""
    lines = shown.text.splitlines()
    assert "ASSET_OBSERVATION" in lines, "the run page shows no asset observation"
    entries = lines[lines.index("ASSET_OBSERVATION") :]
    assert name in entries, f"the run summary on the page has no {name!r}"
    return entries[entries.index(name) + 1]


# Per run: summary entries whose shown value is the one the run recorded.
SHOWN_COUNTS = {
    "dry run": ("dry_run", "planned_updates", "planned_creates", "skipped", "plan_id"),
    "apply": ("created", "updated", "failed", "conflicts", "plan_id", "dry_run", "planned_updates"),
    "undo": ("created", "updated", "failed", "conflicts", "undo_of", "dry_run", "planned_updates"),
}


@pytest.mark.parametrize("name", list(SHOWN_COUNTS))
def test_each_run_page_shows_its_job_status_and_summary(
    name: str, deployment: DagsterProcesses, runs: dict[str, ShownRun]
) -> None:
    run = runs[name]
    shown = page(deployment, f"/runs/{run.run_id}", "ASSET_OBSERVATION", "Success")
    lines = shown.text.splitlines()
    assert f"Runs / {run.run_id[:8]}" in lines
    assert "Success" in lines
    assert any(line.startswith(f"{run.job} @ ") for line in lines), f"no 'Run of {run.job}' in the header"
    assert ASSET in lines
    for entry in SHOWN_COUNTS[name]:
        recorded = run.summary[entry]
        expected = str(recorded).lower() if isinstance(recorded, bool) else str(recorded)
        assert observed(shown, entry) == expected, entry
    assert run.summary["planned_updates"] > 0
    # The run's summary line words its shards as they are: a sync's every shard, an undo's those it changed.
    if name == "apply":
        assert "16/16 shard(s) healthy" in shown.text
    if name == "undo":
        assert "changed shard(s) materialized" in shown.text
        assert (
            "ASSET_MATERIALIZATION" in lines
        )  # the undo changed RT: a materialization, not only an observation
    if name == "dry run":
        # Only the students snapshot is materialized; RT is observed, with the plan.
        assert deployment.ui.materializations(ASSET, run.run_id) == []
    # How the requests in flight moved is one short entry, not a JSON document.
    if "requests_in_flight" in run.summary:
        assert observed(shown, "requests_in_flight").startswith(("adaptive: ended at", "fixed: ended at"))


def test_the_run_pages_link_the_plan_and_the_undone_run(runs: dict[str, ShownRun]) -> None:
    """What ties the runs together, as the summaries recorded it (and the pages show, asserted above)."""
    dry_run_id = runs["dry run"].run_id
    assert runs["dry run"].summary["plan_id"] == dry_run_id
    assert runs["apply"].summary["plan_id"] == dry_run_id
    assert runs["undo"].summary["undo_of"] == runs["apply"].run_id
    assert runs["undo"].summary["updated"] == runs["apply"].summary["updated"]
    assert runs["apply"].tags["sync/target"] == runs["undo"].tags["sync/target"] == "rt"


# Record history: a record_history run for one of the user kinds sync's users, its run page read in Chromium.
HISTORY_JOB, HISTORY_ASSET = "user_kind_sync", "user_kinds"
MARKDOWN = "[Show Markdown]"


def kind_of(world: SyncWorld, user_id: str) -> str | None:
    engine = create_database_engine(world.databases["zlv"], "ZLV_DATABASE_URL")
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT kind FROM users WHERE id = :id"), {"id": user_id}).scalar()


def test_the_record_history_run_page_shows_the_table_with_the_run_linked(
    deployment: DagsterProcesses, worlds: dict[str, SyncWorld]
) -> None:
    ui, world = deployment.ui, worlds[HISTORY_JOB]
    user = sorted(world.stale())[0]
    synced = ui.launch(HISTORY_JOB)
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
    shown = render(f"{deployment.url}/assets/{HISTORY_ASSET}", wait_for=["python -m sync_pipelines.history"])
    assert "python -m sync_pipelines.history user_kinds <record>" in shown.text
    assert "a ZLV user id or e-mail" in shown.text
