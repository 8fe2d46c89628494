"""The decorator every sync asset uses, so the three share one shape.

A sync asset is split into the stable shards, reports one materialization per healthy shard (so it returns no
value: ``output_required=False``), holds a slot of its system's pool while it runs, is fresh for a window, and
ends on the project's errors as one-line ``Failure``s.
"""

import warnings
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.shared.partitions import SHARDS


def sync_asset(
    *,
    name: str,
    group: str,
    pool: str,
    fresh_within: timedelta,
    kinds: set[str],
    description: str,
    ins: Mapping[str, dg.AssetIn] | None = None,
    required_resource_keys: set[str] | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    with warnings.catch_warnings():
        # Single-run backfill policies are marked beta; they are what makes "Materialize all" one run.
        warnings.simplefilter("ignore", dg.BetaWarning)
        decorate = dg.asset(
            key=name,
            group_name=group,
            partitions_def=SHARDS,
            # A backfill of any shards (the UI's "Materialize all" over every partition included) is one run over
            # them all, not one run per shard: the same as a run of the job with no partition.
            backfill_policy=dg.BackfillPolicy.single_run(),
            output_required=False,
            pool=pool,
            kinds=kinds,
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=fresh_within),
            description=description,
            ins=dict(ins or {}),
            required_resource_keys=required_resource_keys,
        )
    return lambda fn: decorate(reported_as_failures(fn))
