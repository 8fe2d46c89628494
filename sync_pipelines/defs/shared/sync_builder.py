"""Every sync's Dagster definitions, built from its ``SyncSpec``: the asset, the job, the undo job, the schedule,
its sensors.

The asset holds a slot of the system's pool, evaluates its prerequisites (blocking checks on the asset itself,
e.g. ``rt_custom_fields_exist``), reads its upstream assets' values, builds the source and runs the engine, and
reports its ``records_synced`` check (a warning naming the records that did not go through). The job
materializes the upstream assets and the target with those checks of the asset's own, leaving the checks defined
apart to ``sync_checks`` (the asset reports per-shard materializations rather than an output, so checks in other
steps of the same run would only be skipped), and carries only its own assets' resources. The schedule's cron
comes from ``<JOB>_CRON`` when set (``off``: the schedule starts stopped), else the spec's default, and it
starts RUNNING only for an enabled system (``SYNC_SYSTEMS``).

A system whose variables are missing (``defs.systems``) is still defined, so the code location loads and the
other systems run: its asset's and jobs' descriptions name the problem, its resources are stand-ins that read no
variable (a missing ``EnvVar`` would fail the run with Dagster's traceback before the project's line), its job
runs the target alone and the asset's and the undo's first act is to fail in one line naming each variable.
A bad cron leaves the schedule out; a bad ``<JOB>_MAX_RUNTIME_SECONDS`` falls back to the spec's limit.

The builder knows no domain: it reads the spec it is given (``defs.code_location`` hands it each registered one).
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import NoReturn

import dagster as dg

from sync_pipelines.core.env import env_text
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.defs.operations.run_workers import run_worker_executor
from sync_pipelines.defs.shared.own_resources_job import OwnResourcesAssetJob, own_resources_asset_job
from sync_pipelines.defs.shared.run_config import SyncAssetConfig
from sync_pipelines.defs.shared.run_report import RECORDS_CHECK, RECORDS_CHECK_DESCRIPTION, SyncEvent
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.shared.sync_asset import sync_asset
from sync_pipelines.defs.shared.sync_run import run_sync
from sync_pipelines.defs.shared.sync_spec import ResourcesT, SourceInputs, SyncSpec
from sync_pipelines.defs.shared.undo_job import undo_job
from sync_pipelines.defs.systems import (
    SCHEDULE_OFF,
    ConfigurationProblem,
    SystemNotConfigured,
    run_stopping_problems,
    schedule_status,
    schedule_timezone,
    sensor_status,
)
from sync_pipelines.sync.source import SyncSource

# Run monitoring's per-run limit (deploy/dagster.yaml's max_runtime_seconds is the instance-wide backstop).
MAX_RUNTIME_TAG = "dagster/max_runtime"


@dataclass(frozen=True)
class BuiltSync:
    """One sync's definitions; ``definitions`` registers them with the system's resources and checks."""

    asset: dg.AssetsDefinition
    job: OwnResourcesAssetJob
    undo_job: dg.JobDefinition
    schedule: dg.ScheduleDefinition | None  # None: its <JOB>_CRON is not a cron expression (reported)
    sensors: tuple[dg.SensorDefinition, ...]
    definitions: dg.Definitions


class UnconfiguredResource:
    """What a resource of a system missing its variables is at run time: anything read from it fails in one
    line naming the variables (a check using it included), instead of Dagster's traceback about an ``EnvVar``."""

    def __init__(self, error: SystemNotConfigured) -> None:
        self._error = error

    def __getattr__(self, name: str) -> NoReturn:
        if name.startswith("_"):
            raise AttributeError(name)
        raise self._error


def unconfigured(
    spec: SyncSpec[ResourcesT], problems: tuple[ConfigurationProblem, ...]
) -> tuple[SyncSpec[ResourcesT], dict[str, object]]:
    """``spec`` as defined while its variables are missing: described as such, its sources failing first, its
    upstream assets not run (its run fails at once); and its resources as stand-ins."""
    error = SystemNotConfigured(spec.system, problems)
    note = f"Not configured: {error}. "

    def fails(_: SourceInputs[ResourcesT]) -> SyncSource:
        raise error

    stand_in = dg.ResourceDefinition.hardcoded_resource(UnconfiguredResource(error))
    described = replace(
        spec,
        source=fails,
        undo_source=fails,
        description=note + spec.description,
        job_description=note + spec.job_description,
        undo_description=note + spec.undo_description,
    )
    return described, {key: stand_in for key in spec.resources.resource_keys()}


def build_sync(spec: SyncSpec[ResourcesT]) -> BuiltSync:
    problems = run_stopping_problems(spec)
    resources = spec.resources.by_key()
    if problems:
        spec, resources = unconfigured(spec, problems)
    asset = sync_asset_of(spec, run_upstream=not problems)
    job = sync_job_of(spec, run_upstream=not problems)
    undo = undo_job(
        name=spec.undo_job,
        asset=spec.target,
        tags=run_tags_of(spec),
        resources=resources,
        bundle=type(spec.resources),
        source=spec.undo_source or spec.source,
        description=spec.undo_description,
    )
    schedule = sync_schedule_of(spec, job)
    sensors = tuple(sensor(spec.job, sensor_status(spec)) for sensor in spec.sensors)
    definitions = dg.Definitions(
        assets=[asset],
        asset_checks=list(spec.checks),
        jobs=[job, undo],
        schedules=[schedule] if schedule is not None else [],
        sensors=list(sensors),
        resources=resources,
    )
    return BuiltSync(asset, job, undo, schedule, sensors, definitions)


def own_check_keys(spec: SyncSpec[ResourcesT]) -> list[dg.AssetCheckKey]:
    """The checks the sync asset evaluates itself: its prerequisites, then ``records_synced``."""
    names = [prerequisite.name for prerequisite in spec.prerequisites] + [RECORDS_CHECK]
    return [dg.AssetCheckKey(dg.AssetKey(spec.target), name) for name in names]


def own_check_specs(spec: SyncSpec[ResourcesT]) -> list[dg.AssetCheckSpec]:
    return [
        *(
            dg.AssetCheckSpec(p.name, asset=spec.target, description=p.description, blocking=True)
            for p in spec.prerequisites
        ),
        dg.AssetCheckSpec(RECORDS_CHECK, asset=spec.target, description=RECORDS_CHECK_DESCRIPTION),
    ]


def evaluate_prerequisites(
    spec: SyncSpec[ResourcesT], context: dg.AssetExecutionContext
) -> Iterator[dg.AssetCheckResult]:
    """The prerequisites this run selected, each evaluated and yielded; the first that fails stops the run in one
    line, before anything is read or written."""
    selected = context.selected_asset_check_keys
    resources = spec.run_resources(context.resources)
    for prerequisite in spec.prerequisites:
        key = dg.AssetCheckKey(dg.AssetKey(spec.target), prerequisite.name)
        if key not in selected:
            continue
        result = prerequisite.evaluate(resources, context.log)
        yield result._replace(asset_key=key.asset_key, check_name=key.name)
        if not result.passed:
            raise dg.Failure(
                description=result.description or f"{prerequisite.name} failed",
                metadata={"check": prerequisite.name},
                allow_retries=False,
            )


def sync_asset_of(spec: SyncSpec[ResourcesT], run_upstream: bool = True) -> dg.AssetsDefinition:
    """The target asset: the spec's source, built from the run's resources and upstream values, run by the engine.

    Without ``run_upstream`` (an unconfigured system) the upstream assets stay in the lineage as dependencies
    whose values are not loaded, so the body, failing first, is the run's first step. A run that selected the
    asset's checks alone (``sync_checks``) evaluates its prerequisites and does not sync."""

    @sync_asset(
        name=spec.target,
        group=spec.group,
        pool=spec.pool,
        fresh_within=spec.fresh_within,
        kinds=set(spec.kinds),
        description=spec.asset_description,
        ins={name: dg.AssetIn(name) for name in spec.upstream_names} if run_upstream else {},
        deps=() if run_upstream else spec.upstream_names,
        required_resource_keys={*spec.resources.resource_keys(), "sync_state"},
        check_specs=own_check_specs(spec),
    )
    def body(
        context: dg.AssetExecutionContext, config: SyncAssetConfig, **upstream: object
    ) -> Iterator[SyncEvent]:
        yield from evaluate_prerequisites(spec, context)
        if dg.AssetKey(spec.target) not in context.selected_asset_keys:
            return
        state: SyncStateResource = context.resources.sync_state
        source = spec.source(SourceInputs(spec.run_resources(context.resources), upstream, context.instance))
        yield from run_sync(context, config, source, state.store())

    return body


def sync_job_of(spec: SyncSpec[ResourcesT], run_upstream: bool = True) -> OwnResourcesAssetJob:
    upstream = spec.upstream_names if run_upstream else ()
    return own_resources_asset_job(
        name=spec.job,
        selection=(
            dg.AssetSelection.assets(*upstream, spec.target)
            - dg.AssetSelection.checks_for_assets(spec.target)
        )
        | dg.AssetSelection.checks(*own_check_keys(spec)),
        tags=run_tags_of(spec),
        executor_def=run_worker_executor,
        description=spec.job_description,
    )


def run_tags_of(spec: SyncSpec[ResourcesT]) -> dict[str, str]:
    """The spec's tags and its ``dagster/max_runtime``, in seconds (``<JOB>_MAX_RUNTIME_SECONDS`` when set and
    valid; a bad value is reported by ``defs.systems`` and the spec's limit kept)."""
    try:
        seconds = spec.max_runtime_setting.number()
    except ConfigurationError:
        seconds = spec.max_runtime.total_seconds()
    return {**spec.tags, MAX_RUNTIME_TAG: str(int(seconds))}


def sync_schedule_of(spec: SyncSpec[ResourcesT], job: OwnResourcesAssetJob) -> dg.ScheduleDefinition | None:
    """The spec's schedule, its cron from ``<JOB>_CRON`` when set; ``off`` defines it STOPPED at its default cron.
    ``None`` while ``<JOB>_CRON`` is not a cron expression: left out, and reported by ``defs.systems``."""
    setting = env_text(spec.cron_variable, "")
    off = setting.lower() == SCHEDULE_OFF
    cron = setting if setting and not off else spec.schedule.default_cron
    status = dg.DefaultScheduleStatus.STOPPED if off else schedule_status(spec)
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
            execution_timezone=schedule_timezone(),
            default_status=status,
            description=description,
        )
    except dg.DagsterInvalidDefinitionError:
        return None
