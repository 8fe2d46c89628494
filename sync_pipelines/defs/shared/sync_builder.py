"""Every sync's Dagster definitions, built from its ``SyncSpec``: the asset, the job, the undo job, the schedule.

The asset holds a slot of the system's pool, reads its upstream assets' values, builds the source and runs the
engine; the job materializes the upstream assets and the target, leaving the target's own checks to
``sync_checks`` (the asset reports per-shard materializations rather than an output, so checks in the same run
would only be skipped); the schedule's cron comes from ``<JOB>_CRON`` when set (``off``: the schedule starts
stopped), else the spec's default, and it starts RUNNING only for an enabled system (``SYNC_SYSTEMS``).
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from sync_pipelines.core.env import env_number, env_text, env_timezone
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.defs.shared.run_config import SyncAssetConfig
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.shared.sync_run import run_sync
from sync_pipelines.defs.shared.sync_spec import SourceInputs, SyncSpec
from sync_pipelines.defs.shared.undo_job import undo_job
from sync_pipelines.defs.systems import schedule_status

SCHEDULE_OFF = "off"
# Run monitoring's per-run limit (deploy/dagster.yaml's max_runtime_seconds is the instance-wide backstop).
MAX_RUNTIME_TAG = "dagster/max_runtime"


@dataclass(frozen=True)
class BuiltSync:
    """One sync's definitions; ``definitions`` registers them with the system's resources and checks."""

    asset: dg.AssetsDefinition
    job: Any  # what define_asset_job returns (its class is not exported by dagster)
    undo_job: dg.JobDefinition
    schedule: dg.ScheduleDefinition
    definitions: dg.Definitions


def build_sync(spec: SyncSpec) -> BuiltSync:
    asset = sync_asset_of(spec)
    job = sync_job_of(spec)
    undo = undo_job(
        name=spec.undo_job,
        asset=spec.target,
        tags=run_tags_of(spec),
        resources=set(spec.resources),
        source=spec.undo_source or spec.source,
        description=spec.undo_description,
    )
    schedule = sync_schedule_of(spec, job)
    definitions = dg.Definitions(
        assets=[asset],
        asset_checks=list(spec.checks),
        jobs=[job, undo],
        schedules=[schedule],
        resources=dict(spec.resources),
    )
    return BuiltSync(asset, job, undo, schedule, definitions)


def sync_asset_of(spec: SyncSpec) -> dg.AssetsDefinition:
    """The target asset: the spec's source, built from the run's resources and upstream values, run by the engine."""

    @sync_asset(
        name=spec.target,
        group=spec.group,
        pool=spec.pool,
        fresh_within=spec.fresh_within,
        kinds=set(spec.kinds),
        description=spec.description,
        ins={name: dg.AssetIn(name) for name in spec.upstream},
        required_resource_keys={*spec.resources, "sync_state"},
    )
    def body(context: dg.AssetExecutionContext, config: SyncAssetConfig, **upstream: Any):
        state: SyncStateResource = context.resources.sync_state
        source = spec.source(SourceInputs(context.resources, upstream, context.instance))
        yield from run_sync(context, config, source, state.store())

    return body


def sync_job_of(spec: SyncSpec) -> Any:
    return dg.define_asset_job(
        name=spec.job,
        selection=dg.AssetSelection.assets(*spec.upstream, spec.target)
        - dg.AssetSelection.checks_for_assets(spec.target),
        tags=run_tags_of(spec),
        executor_def=dg.in_process_executor,
        description=spec.job_description,
    )


def run_tags_of(spec: SyncSpec) -> dict[str, str]:
    """The spec's tags and its ``dagster/max_runtime``, in seconds (``<JOB>_MAX_RUNTIME_SECONDS`` when set)."""
    seconds = env_number(
        spec.max_runtime_variable, spec.max_runtime.total_seconds(), kind=int, above=0, unit="seconds"
    )
    return {**spec.tags, MAX_RUNTIME_TAG: str(int(seconds or 0))}


def sync_schedule_of(spec: SyncSpec, job: Any) -> dg.ScheduleDefinition:
    """The spec's schedule, its cron from ``<JOB>_CRON`` when set; ``off`` defines it STOPPED at its default cron."""
    setting = env_text(spec.cron_variable, "")
    off = setting.lower() == SCHEDULE_OFF
    cron = setting if setting and not off else spec.schedule.default_cron
    status = dg.DefaultScheduleStatus.STOPPED if off else schedule_status(spec.system)
    description = spec.schedule.description
    if off:
        description += f" Defined stopped by {spec.cron_variable}=off."
    elif setting:
        description = (
            f"Every shard, on {cron!r} in SYNC_TIMEZONE (from {spec.cron_variable}; "
            f"default {spec.schedule.default_cron!r})."
        )
    try:
        return dg.ScheduleDefinition(
            name=spec.schedule.name,
            job=job,
            cron_schedule=cron,
            execution_timezone=env_timezone(),
            default_status=status,
            description=description,
        )
    except dg.DagsterInvalidDefinitionError:
        raise ConfigurationError(
            spec.cron_variable,
            f"{cron!r} is not a cron expression of 5 fields (minute hour day month weekday), e.g. "
            f"{spec.schedule.default_cron!r}, or {SCHEDULE_OFF!r}",
        ) from None
