"""Record history from Dagster and the shell: the ``record_history`` job, and what ``python -m
sync_pipelines.history`` runs. Both ask the engine (``sync.record_history.ask``) with the sync's own resources,
built from the environment as its runs build them, and show the same answer: the run page as Markdown metadata
(each run a link to its page), the shell as text.

The job carries only the state store; the system's resources are built for the question asked (``system``), so a
deployment syncing one system can ask about it while the others' variables are unset.
"""

import asyncio
import json
import logging
import os
from typing import Any

import dagster as dg
from pydantic import Field

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.job_command import CODE_LOCATION_MODULE
from sync_pipelines.defs.shared.definitions import sync_state
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_spec import SyncSpec
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines.sync.record_history import SHOWN_EVENTS, RecordHistory, ask

JOB = "record_history"
SYSTEMS_SETTING = "SYNC_SYSTEMS"


def history_spec(system: str) -> SyncSpec:
    """The registered sync named ``system`` (as in ``SYNC_SYSTEMS``) that keeps a record history."""
    known = {spec.system: spec for spec in SYNCS if spec.record_history is not None}
    spec = known.get(system.strip())
    if spec is None:
        raise ConfigurationError(
            "system",
            f"{system!r} is not a sync; ask about one of {', '.join(known)} (as named in SYNC_SYSTEMS)",
        )
    return spec


def undo_command(spec: SyncSpec, run_id: str) -> str:
    """The shell command that undoes ``run_id`` (not a preview), ready to paste."""
    config = {"ops": {f"{spec.target}_undo": {"config": {"run_id": run_id, "dry_run": False}}}}
    return (
        f"echo '{json.dumps(config)}' > undo.yaml && dagster job execute -m {CODE_LOCATION_MODULE} "
        f"-j {spec.undo_job} -c undo.yaml"
    )


def missing_variables(spec: SyncSpec) -> list[str]:
    return [name for name in spec.required_variables if not os.environ.get(name, "").strip()]


def ask_about(system: str, record: str, log: logging.Logger, state: SyncStateResource) -> RecordHistory:
    """The history of ``record`` in ``system``'s target: the sync's resources built from the environment, the
    record read live on both sides, its runs read from the state database."""
    spec = history_spec(system)
    assert spec.record_history is not None
    missing = missing_variables(spec)
    if missing:
        raise ConfigurationError(
            ", ".join(missing),
            f"{'is' if len(missing) == 1 else 'are'} not set: the history of a {spec.system} record reads "
            f"{spec.system}'s systems with the variables its sync uses",
        )
    store = state.store()
    with dg.build_resources(
        {
            **spec.resources,
            **spec.record_history.resources,
        }  # the sync's own, and any the history reads besides
    ) as resources:
        lookup = spec.record_history.lookup(resources, log)
        return asyncio.run(ask(lookup, store, record, lambda run_id: undo_command(spec, run_id)))


class RecordHistoryConfig(dg.Config):
    system: str = Field(description="The sync, as named in SYNC_SYSTEMS: rt, bakalari or user_kinds.")
    record: str = Field(
        description="The record as support staff know it: rt: an RT user id or a student id; user_kinds: a ZLV "
        "user id or e-mail; bakalari: a Bakaláři id or an EduRPG user id."
    )


def run_link(run_id: str) -> str:
    """A run's cell on a run page: its id, linking to its page (under ``DAGSTER_WEBSERVER_URL`` when set, as the
    alerts' links are: a UI served under a path prefix)."""
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "").strip().rstrip("/")
    return f"[{run_id[:8]}]({base}/runs/{run_id})"


@dg.op(
    name="record_lookup",
    out={"history": dg.Out(dg.Nothing, description="The answer, as this step's metadata.")},
    required_resource_keys={"sync_state"},
    description="One record's history: every run that planned, wrote, skipped, refused, conflicted on or undid "
    "it, what both systems hold now and why they differ, and the command that undoes its last change.",
)
@reported_as_failures
def record_history_op(context: dg.OpExecutionContext, config: RecordHistoryConfig):
    history = ask_about(config.system, config.record, context.log, context.resources.sync_state)
    context.log.info(
        f"{history.subject.label} in {history.target}: {len(history.events)} event(s); "
        + (f"last change by run {history.last_change.run_id}" if history.last_change else "no change applied")
    )
    metadata: dict[str, Any] = {
        "record": dg.MetadataValue.text(history.subject.label),
        "target": dg.MetadataValue.text(history.target),
        "events": dg.MetadataValue.int(len(history.events)),
        "history": dg.MetadataValue.md(history.events_table(run_link, SHOWN_EVENTS)),
        "now": dg.MetadataValue.md(history.now_table()),
        "undo_last_change": dg.MetadataValue.text(history.undo_command or "nothing to undo"),
    }
    if history.last_change is not None:
        metadata["last_change_run"] = dg.MetadataValue.text(history.last_change.run_id)
    yield dg.Output(None, output_name="history", metadata=metadata)


@dg.job(
    name=JOB,
    executor_def=dg.in_process_executor,
    tags={"sync/maintenance": "true"},
    resource_defs={"sync_state": sync_state},
    description="Why does the target hold this value for this record? Config system (rt, bakalari, user_kinds) "
    "and record (an RT user id or a student id; a ZLV user id or e-mail; a Bakaláři id or EduRPG user id). "
    "Reads both systems live and writes nothing but what reading a Bakaláři student writes in every run (their "
    "rotated token). The same as python -m sync_pipelines.history <system> <record>.",
)
def record_history() -> None:
    record_history_op()
