"""The stable shards (``sync.shards``) as Dagster partitions, and which of them a run covers.

A run with no partition (the CLI default) syncs every shard and records a materialization for each shard it got
through; a run tagged ``dagster/partition: shard-03`` (a sensor request, a backfill, the UI) syncs that shard
alone. The jobs carry no partition-range tags: Dagster refuses a run holding both those and ``dagster/partition``.
"""

from collections.abc import Mapping

import dagster as dg

from sync_pipelines.sync.shards import SHARD_KEYS

SHARDS = dg.StaticPartitionsDefinition(SHARD_KEYS)


def shards_of_tags(tags: Mapping[str, str]) -> set[str]:
    """The shards a run with these tags covers: its partition (range), or all of them when it has none."""
    if "dagster/partition" in tags:
        return {tags["dagster/partition"]}
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start in SHARD_KEYS and end in SHARD_KEYS:
        return set(SHARD_KEYS[SHARD_KEYS.index(start) : SHARD_KEYS.index(end) + 1])
    return set(SHARD_KEYS)


def selected_shards(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> set[str]:
    """The shards this run covers (see ``shards_of_tags``)."""
    run = context.run
    return shards_of_tags(run.tags if run else {})
