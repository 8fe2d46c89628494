"""The web UI as a person sees it: the user kinds sync's dry run, the apply of its plan and the undo of that apply,
launched through the webserver's GraphQL API, then the asset page and each run's page rendered in headless
Chromium and their shown text read.

These assert what the pages show today (asset key, job names, run status, the counts and tags the runs recorded);
what a page should show is added here as one more ``assert ... in page.text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sync_pipelines_tests.harness.browser import RenderedPage, chromium_path, render
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

JOB, UNDO_JOB, ASSET, OP = "user_kind_sync", "user_kind_sync_undo", "user_kinds", "user_kinds"


@dataclass(frozen=True)
class ShownRun:
    """One run: its id, job, tags and run summary as the GraphQL API holds them."""

    run_id: str
    job: str
    tags: dict[str, str]
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def runs(deployment: DagsterProcesses, worlds: dict[str, SyncWorld]) -> dict[str, ShownRun]:
    """A dry run, the apply of its plan, and the undo (applied) of that apply, each waited for."""
    ui, world = deployment.ui, worlds[JOB]
    stale = world.stale()
    assert stale
    launched = {
        "dry run": ui.launch(JOB, run_config={"ops": {OP: {"config": {"dry_run": True}}}}),
    }
    ui.wait_for_success(launched["dry run"])
    assert world.stale() == stale  # a dry run writes nothing
    launched["apply"] = ui.launch(
        JOB, run_config={"ops": {OP: {"config": {"apply_plan_id": launched["dry run"]}}}}
    )
    ui.wait_for_success(launched["apply"])
    assert world.stale() == set()
    undo_config = {"run_id": launched["apply"], "dry_run": False}
    launched["undo"] = ui.launch(UNDO_JOB, run_config={"ops": {f"{OP}_undo": {"config": undo_config}}})
    ui.wait_for_success(launched["undo"])
    assert world.stale() == stale
    shown = {}
    for name, run_id in launched.items():
        run = ui.run(run_id)
        summaries = [o["metadata"] for o in ui.observations(ASSET, run_id)]
        shown[name] = ShownRun(
            run_id, run["pipelineName"], tag_map(run["tags"]), summaries[0] if summaries else {}
        )
    return shown


def page(deployment: DagsterProcesses, path: str, *wait_for: str) -> RenderedPage:
    rendered = render(f"{deployment.url}{path}", wait_for=wait_for)
    print(f"----- {path}: shown text -----\n{rendered.text}")  # the page as read, under a failing assert
    return rendered


def test_the_asset_page_shows_the_asset_and_its_latest_materialization(
    deployment: DagsterProcesses, runs: dict[str, ShownRun]
) -> None:
    # The Overview's headings render before the materialization they describe: wait for its partition too.
    shown = page(deployment, f"/assets/{ASSET}", "Latest materialization", "shard-15", "run_updated")
    lines = shown.text.splitlines()
    assert ASSET in lines
    assert {"Latest materialization", "Description", "Metadata", "Jobs", JOB} <= set(lines)
    assert "users.kind in the Zéro Logement Vacant database" in shown.text
    # The apply materialized every shard last (an undo observes the asset); the Overview names the latest
    # materialization's partition and metadata.
    assert "shard-15" in lines
    assert {"updated", "unchanged", "failed"} <= set(lines)
    # ... and what the latest run that materialized (the apply) did as a whole, not that one shard's figures.
    assert "run_updated" in lines, "the Overview shows no run totals"
    row = lines[lines.index("run_updated") : lines.index("run_updated") + 3]
    assert str(runs["apply"].summary["updated"]) in row[1:], row
    assert {"run_shards", "run_plan"} <= set(lines)


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
    "apply": ("dry_run", "planned_updates", "created", "updated", "failed", "conflicts", "plan_id"),
    "undo": ("dry_run", "planned_updates", "created", "updated", "failed", "conflicts", "undo_of"),
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
    # The run's closing line words its shards as they are: an undo materializes none, so it counts none.
    if name == "apply":
        assert "16/16 shard(s) healthy" in shown.text
    if name == "undo":
        assert "shard(s) healthy" not in shown.text
    # How the requests in flight moved is one short entry, not a JSON document.
    if "requests_in_flight" in run.summary:
        assert observed(shown, "requests_in_flight").startswith(("adaptive: ended at", "fixed: ended at"))


def test_the_run_pages_link_the_plan_and_the_undone_run(runs: dict[str, ShownRun]) -> None:
    """What ties the three together, as the summaries recorded it (and the pages show, asserted above)."""
    dry_run_id = runs["dry run"].run_id
    assert runs["dry run"].summary["plan_id"] == dry_run_id
    assert runs["apply"].summary["plan_id"] == dry_run_id
    assert runs["undo"].summary["undo_of"] == runs["apply"].run_id
    assert runs["undo"].summary["updated"] == runs["apply"].summary["updated"]
    assert runs["apply"].tags["sync/target"] == runs["undo"].tags["sync/target"] == "zlv"
