"""The decorator every sync asset uses, so the three share one shape.

A sync asset is split into the stable shards, reports one materialization per healthy shard (so it returns no
value: ``output_required=False``), holds a slot of its system's pool while it runs, is fresh for a window, and
ends on the project's errors as one-line ``Failure``s. Its checks are its own (``check_specs``): it yields their
results itself, since a check in a step of its own would wait for an output the asset never returns; it can be
subset, so ``sync_checks`` runs those checks without the sync.
"""

import warnings
from collections.abc import Callable, Mapping, Sequence
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
    deps: Sequence[str] = (),
    required_resource_keys: set[str] | None = None,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    with warnings.catch_warnings():
        # Single-run backfill policies are marked beta; they are what makes "Materialize all" one run.
        warnings.simplefilter("ignore", dg.BetaWarning)
        # A multi-asset of one asset: the asset decorator cannot be subset, which sync_checks needs.
        decorate = dg.multi_asset(
            name=name,
            specs=[
                dg.AssetSpec(
                    name,
                    # The assets it reads (``ins``), and those only in its lineage (``deps``).
                    deps=[*(asset_in.key for asset_in in (ins or {}).values() if asset_in.key), *deps],
                    group_name=group,
                    description=description,
                    kinds=kinds,
                    partitions_def=SHARDS,
                    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=fresh_within),
                    # Reported as per-shard materializations, not returned: the output is never required.
                    skippable=True,
                )
            ],
            partitions_def=SHARDS,
            # A backfill of any shards (the UI's "Materialize all" over every partition included) is one run over
            # them all, not one run per shard: the same as a run of the job with no partition.
            backfill_policy=dg.BackfillPolicy.single_run(),
            pool=pool,
            description=description,
            ins=dict(ins or {}),
            required_resource_keys=required_resource_keys,
            check_specs=list(check_specs),
            can_subset=True,
        )
    return lambda fn: decorate(reported_as_failures(fn))
