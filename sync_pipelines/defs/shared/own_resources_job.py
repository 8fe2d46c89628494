"""A sync's asset job that carries only the resources its own assets and checks use.

Dagster hands an asset job every resource of the code location (``Definitions.resources``), so each sync job's
launchpad would list every system's settings: an RT operator would see Bakaláři's and Portail DF's. A job
built here is resolved as Dagster resolves any asset job, then resolved again with the resources that first job
requires (its assets', its checks', their IO managers'), so its config schema, and the launchpad, hold exactly
those. Dagster offers no option for this; the hook is ``UnresolvedAssetJobDefinition.resolve``, the one step at
which the code location's resources are given to an asset job.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The fields of an unresolved asset job, read from its constructor: they differ between the Dagster versions this
# project supports (1.13 added ``owners`` and ``automation_condition``).
_FIELDS = tuple(
    name for name in inspect.signature(UnresolvedAssetJobDefinition.__new__).parameters if name != "cls"
)


class OwnResourcesAssetJob(UnresolvedAssetJobDefinition):
    """An asset job resolved with only the resources it requires (see the module docstring)."""

    def resolve(
        self,
        asset_graph: Any,
        default_executor_def: dg.ExecutorDefinition | None = None,
        resource_defs: Mapping[str, dg.ResourceDefinition] | None = None,
    ) -> dg.JobDefinition:
        every = super().resolve(asset_graph, default_executor_def, resource_defs)
        return super().resolve(asset_graph, default_executor_def, every.get_required_resource_defs())


def own_resources_asset_job(**kwargs: Any) -> OwnResourcesAssetJob:
    """``dg.define_asset_job(**kwargs)``, resolved with only the resources the job requires."""
    job = dg.define_asset_job(**kwargs)
    return OwnResourcesAssetJob(**{name: getattr(job, name) for name in _FIELDS})
