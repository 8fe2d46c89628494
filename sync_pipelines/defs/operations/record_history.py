"""Record history from Dagster and the shell: the ``record_history`` job, and what ``python -m
sync_pipelines.history`` runs. Both ask the engine (``sync.record_history.ask``) with the sync's own resources,
built from the environment as its runs build them, and show the same answer: the run page as Markdown metadata
(each run a link to its page), the shell as text.

The job carries only the state store; the system's resources are built for the question asked (``system``), so a
deployment syncing one system can ask about it while the others' variables are unset. Both are made for the
registered specs they are given (``defs.syncs``), whose systems they name.
"""

import asyncio
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.job_command import CODE_LOCATION_MODULE
from sync_pipelines.defs.shared.definitions import sync_state
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_spec import HistoryInputs, SyncSpec
from sync_pipelines.sync.record_history import SHOWN_EVENTS, RecordHistory, ask

JOB = "record_history"
SYSTEMS_SETTING = "SYNC_SYSTEMS"


def history_spec(specs: Sequence[SyncSpec[Any]], system: str) -> SyncSpec[Any]:
    """The sync of ``specs`` named ``system`` (as in ``SYNC_SYSTEMS``) that keeps a record history."""
    known = {spec.system: spec for spec in specs if spec.record_history is not None}
    spec = known.get(system.strip())
    if spec is None:
        raise ConfigurationError(
            "system",
            f"{system!r} is not a sync; ask about one of {', '.join(known)} (as named in SYNC_SYSTEMS)",
        )
    return spec


def undo_command(spec: SyncSpec[Any], run_id: str) -> str:
    """The shell command that undoes ``run_id`` (not a preview), ready to paste."""
    config = {"ops": {f"{spec.target}_undo": {"config": {"run_id": run_id, "dry_run": False}}}}
    return (
        f"echo '{json.dumps(config)}' > undo.yaml && dagster job execute -m {CODE_LOCATION_MODULE} "
        f"-j {spec.undo_job} -c undo.yaml"
    )


def missing_variables(spec: SyncSpec[Any]) -> list[str]:
    return [name for name in spec.required_variables if not os.environ.get(name, "").strip()]


def ask_about(
    specs: Sequence[SyncSpec[Any]], system: str, record: str, log: logging.Logger, state: SyncStateResource
) -> RecordHistory:
    """The history of ``record`` in ``system``'s target: the sync's resources built from the environment, the
    record read live on both sides, its runs read from the state database."""
    spec = history_spec(specs, system)
    assert spec.record_history is not None
    missing = missing_variables(spec)
    if missing:
        raise ConfigurationError(
            ", ".join(missing),
            f"{'is' if len(missing) == 1 else 'are'} not set: the history of a {spec.system} record reads "
            f"{spec.system}'s systems with the variables its sync uses",
        )
    store = state.store()
    own = spec.resources.by_key()
    with dg.build_resources({**own, **spec.upstream_resources()}) as resources:
        upstream = {key: getattr(resources, key) for key in spec.upstream_resources()}
        lookup = spec.record_history.lookup(HistoryInputs(spec.run_resources(resources), upstream, log))
        return asyncio.run(ask(lookup, store, record, lambda run_id: undo_command(spec, run_id)))


def run_link(run_id: str) -> str:
    """A run's cell on a run page: its id, linking to its page (under ``DAGSTER_WEBSERVER_URL`` when set, as the
    alerts' links are: a UI served under a path prefix)."""
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "").strip().rstrip("/")
    return f"[{run_id[:8]}]({base}/runs/{run_id})"


def record_history_job(specs: Sequence[SyncSpec[Any]]) -> dg.JobDefinition:
    """The ``record_history`` job, asking about the syncs of ``specs`` that keep a record history."""
    systems = ", ".join(spec.system for spec in specs if spec.record_history is not None)

    class RecordHistoryConfig(dg.Config):
        system: str = Field(description=f"The sync, as named in SYNC_SYSTEMS: {systems}.")
        record: str = Field(
            description="The record as support staff know it: "
            + "; ".join(
                f"{spec.system}: {spec.record_history.names}"
                for spec in specs
                if spec.record_history is not None
            )
            + "."
        )

    @dg.op(
        name="record_lookup",
        out={"history": dg.Out(dg.Nothing, description="The answer, as this step's metadata.")},
        required_resource_keys={"sync_state"},
        description="One record's history: every run that planned, wrote, skipped, refused, conflicted on or "
        "undid it, what both systems hold now and why they differ, and the command that undoes its last change.",
    )
    @reported_as_failures
    def record_history_op(
        context: dg.OpExecutionContext, config: RecordHistoryConfig
    ) -> Iterator[dg.Output[None]]:
        history = ask_about(specs, config.system, config.record, context.log, context.resources.sync_state)
        context.log.info(
            f"{history.subject.label} in {history.target}: {len(history.events)} event(s); "
            + (
                f"last change by run {history.last_change.run_id}"
                if history.last_change
                else "no change applied"
            )
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
        description=f"Why does the target hold this value for this record? Config system ({systems}) and record "
        "(as the sync's support staff know it). Reads both systems live and writes nothing but what reading the "
        "record writes in every run of its sync (a Bakaláři student's rotated token). The same as python -m "
        "sync_pipelines.history <system> <record>.",
    )
    def record_history() -> None:
        record_history_op()

    return record_history
