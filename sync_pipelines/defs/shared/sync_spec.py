"""A sync declared once: what is particular to one sync (its system, target, job, schedule, resources, source).

Everything a sync has in Dagster (the asset, its job, the undo job, the schedule, its sensors, the resources, the
checks) is built from its ``SyncSpec`` by ``defs.shared.sync_builder``, and the code location, the lists of
systems (``SYNC_SYSTEMS``'s names and required variables, ``sync_checks``' selection), the configuration check and
record history are all derived from the one list of registered specs (``defs.syncs``), so a new sync is one
folder and one line in that list.

A spec is generic over its resources (``SyncSpec[RtResources]``, a ``ResourceBundle``): its source, its
prerequisites and its record history get that bundle, so mypy names a misspelt resource.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Generic, TypeVar

import dagster as dg

from sync_pipelines.core.env import NumberSetting
from sync_pipelines.defs.shared.resource_bundle import ResourceBundle
from sync_pipelines.defs.shared.upstream import Upstream
from sync_pipelines.sync.record_history import RecordLookup
from sync_pipelines.sync.source import SyncSource

MAX_RUNTIME_LIMIT = 7 * 86_400  # seconds; a run going on for a week is hung, whatever the job

ResourcesT = TypeVar("ResourcesT", bound=ResourceBundle)
# A sensor of a sync (RT's ``students_changed``), made for its job's name and its default status (RUNNING for an
# enabled system), so that the spec holding it need not be imported by it.
SensorFactory = Callable[[str, dg.DefaultSensorStatus], dg.SensorDefinition]


@dataclass(frozen=True)
class SourceInputs(Generic[ResourcesT]):
    """What a sync's source is built from: the run's resources (the sync's bundle), the values of the assets the
    sync reads (``upstream``, by asset key; empty in an undo, whose records come from the audit log) and the
    Dagster instance."""

    resources: ResourcesT
    upstream: Mapping[str, object]
    instance: dg.DagsterInstance


@dataclass(frozen=True)
class Prerequisite(Generic[ResourcesT]):
    """What the target system must offer before a sync may read or write it (RT: the custom fields it writes), as
    a blocking check on the sync asset itself: the asset evaluates it first, shows its result on its Checks tab,
    and stops in one line (the result's description) when it fails. In ``sync_checks`` it runs alone, without
    the sync, and only for an enabled system. ``evaluate`` gets the run's resources and log."""

    name: str
    description: str
    evaluate: Callable[[ResourcesT, logging.Logger], dg.AssetCheckResult]


@dataclass(frozen=True)
class ScheduleSpec:
    """The sync job's schedule; its cron can be replaced without code by the variable ``<JOB>_CRON``."""

    name: str
    default_cron: str
    description: str


@dataclass(frozen=True)
class HistoryInputs(Generic[ResourcesT]):
    """What a record history's lookup is built from: the sync's resources, its upstream assets' resources by key
    (RT's: the students table, which it reads as the ``students`` asset does), and a logger."""

    resources: ResourcesT
    upstream: Mapping[str, object]
    log: logging.Logger


@dataclass(frozen=True)
class HistorySpec(Generic[ResourcesT]):
    """A sync's record history: how a person names one of its records (``names``, for the descriptions) and the
    domain's ``RecordLookup``, built from the sync's resources (``HistoryInputs``)."""

    names: str
    lookup: Callable[[HistoryInputs[ResourcesT]], RecordLookup]

    def how_to_ask(self, system: str) -> str:
        """One sentence for the sync asset's description: how to ask why a record holds its value."""
        return (
            f"Why does a record hold its value? Run `python -m sync_pipelines.history {system} <record>`, or the "
            f"record_history job (config system: {system}, record: ...); a record is {self.names}."
        )


@dataclass(frozen=True)
class SyncSpec(Generic[ResourcesT]):
    """One sync: the names operators script against and the parts that differ from one sync to another."""

    system: str  # the name in SYNC_SYSTEMS
    target: str  # the sync asset's key (and the audit log's target)
    job: str  # the sync job; its undo job is ``<job>_undo``
    group: str
    pool: str  # the API's pool: runs of this sync and of its checks hold a slot while they call it
    tags: Mapping[str, str]  # the job's and its undo's tags (the run queue limits one run per sync/target)
    # Its own variables; with its upstream assets' they are ``required_variables``.
    variables: tuple[str, ...]
    # Its resources, one field per key (sync_state is shared; an upstream asset's are the upstream's).
    resources: ResourcesT
    source: Callable[[SourceInputs[ResourcesT]], SyncSource]
    schedule: ScheduleSpec
    kinds: frozenset[str]
    fresh_within: timedelta
    # Run monitoring fails a run of the job (or its undo) still going after this long (``dagster/max_runtime``):
    # a hung run with a live worker must not hold its target's run slots until the instance-wide 12 h limit.
    # Set from measured run times with a wide margin; ``<JOB>_MAX_RUNTIME_SECONDS`` replaces it.
    max_runtime: timedelta
    description: str  # the asset's
    job_description: str
    undo_description: str
    # How an undo builds its source; unset: as the sync does (without upstream values).
    undo_source: Callable[[SourceInputs[ResourcesT]], SyncSource] | None = None
    # Assets the sync job materializes first and whose values the source reads (RT: the students table).
    upstream: tuple[Upstream, ...] = ()
    # Checks of their own, run by ``sync_checks`` (not by the sync job: they would wait for an output the asset
    # does not return).
    checks: Sequence[dg.AssetChecksDefinition] = field(default_factory=tuple)
    prerequisites: Sequence[Prerequisite[ResourcesT]] = field(default_factory=tuple)
    # Sensors that start its job (RUNNING only for an enabled system).
    sensors: Sequence[SensorFactory] = field(default_factory=tuple)
    # The numeric settings its runs read (``core.settings.api_settings`` and its own): while one is wrong, its runs
    # fail at once naming it, and the configuration check reports it.
    settings: tuple[NumberSetting, ...] = ()
    # ``python -m sync_pipelines.history <system> <record>`` and the ``record_history`` job.
    record_history: HistorySpec[ResourcesT] | None = None

    @property
    def required_variables(self) -> tuple[str, ...]:
        """The variables without which it cannot run: its upstream assets', then its own."""
        names = [name for upstream in self.upstream for name in upstream.required_variables]
        return tuple(dict.fromkeys([*names, *self.variables]))

    @property
    def upstream_names(self) -> tuple[str, ...]:
        return tuple(upstream.name for upstream in self.upstream)

    def upstream_resources(self) -> dict[str, object]:
        """Its upstream assets' resources, by key."""
        return {key: value for upstream in self.upstream for key, value in upstream.resources.items()}

    def run_resources(self, resources: object) -> ResourcesT:
        """Its bundle of a run's initialized resources (``context.resources``)."""
        return type(self.resources).of_run(resources)

    @property
    def asset_description(self) -> str:
        """The asset's description, with how to ask why one of its records holds its value."""
        if self.record_history is None:
            return self.description
        return f"{self.description} {self.record_history.how_to_ask(self.system)}"

    @property
    def undo_job(self) -> str:
        return f"{self.job}_undo"

    @property
    def cron_variable(self) -> str:
        """The environment variable that replaces the schedule's cron, e.g. ``BAKALARI_SYNC_CRON``."""
        return f"{self.job.upper()}_CRON"

    @property
    def max_runtime_variable(self) -> str:
        """The environment variable that replaces ``max_runtime``, e.g. ``RT_USER_SYNC_MAX_RUNTIME_SECONDS``."""
        return f"{self.job.upper()}_MAX_RUNTIME_SECONDS"

    @property
    def max_runtime_setting(self) -> NumberSetting:
        """``max_runtime_variable`` with the spec's limit as its default: whole seconds, up to 7 days."""
        return NumberSetting(
            self.max_runtime_variable,
            int(self.max_runtime.total_seconds()),
            kind=int,
            above=0,
            maximum=MAX_RUNTIME_LIMIT,
            unit="seconds",
        )

    def checked_assets(self) -> tuple[str, ...]:
        """The assets whose checks ``sync_checks`` runs for this system: the target, the assets it reads and
        those its checks watch."""
        watched = {key.asset_key.to_user_string() for check in self.checks for key in check.check_keys}
        return tuple(sorted(watched | set(self.upstream_names) | {self.target}))
