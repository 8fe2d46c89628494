"""The undo job every sync has: one op that reverses a past run's applied changes (``sync.replay``).

Each sync's spec says which resources its source needs and how to build the source from them; the op, its
one-line failures, the job's tags (the sync's own, so an undo queues behind a sync of the same target) and the
in-process executor are the same for every sync. The job carries its resources itself (the system's own and the
state store), so its launchpad lists only those instead of every resource of the code location.
"""

from collections.abc import Callable, Iterator, Mapping

import dagster as dg

from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.definitions import sync_state
from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.run_config import UndoConfig
from sync_pipelines.defs.shared.run_report import SyncEvent
from sync_pipelines.defs.shared.sync_run import run_undo
from sync_pipelines.defs.shared.sync_spec import ResourcesT, SourceInputs
from sync_pipelines.sync.source import SyncSource


def undo_job(
    *,
    name: str,
    asset: str,
    tags: Mapping[str, str],
    resources: Mapping[str, object],
    bundle: type[ResourcesT],
    source: Callable[[SourceInputs[ResourcesT]], SyncSource],
    description: str,
) -> dg.JobDefinition:
    """``name`` (e.g. ``rt_user_sync_undo``) with one op ``<asset>_undo``; ``source`` builds the sync's source
    from ``resources`` (key -> resource), handed to it as its ``bundle`` (no upstream values: an undo's records
    come from the audit log)."""

    @dg.op(
        name=f"{asset}_undo",
        out={},
        required_resource_keys={*resources, "sync_state"},
        description=f"Reverse one run's applied changes to {asset} (a preview unless dry_run: false).",
    )
    @reported_as_failures
    def undo(context: dg.OpExecutionContext, config: UndoConfig) -> Iterator[SyncEvent]:
        state = context.resources.sync_state.store()
        inputs = SourceInputs(bundle.of_run(context.resources), {}, context.instance)
        yield from run_undo(context, config, source(inputs), state, dg.AssetKey(asset))

    @dg.job(
        name=name,
        tags=dict(tags),
        executor_def=run_worker_executor,
        description=description,
        resource_defs={**resources, "sync_state": sync_state},
    )
    def job() -> None:
        undo()

    return job
