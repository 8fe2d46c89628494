"""Stable shards: the partitions every sync uses as its batches.

A record's shard comes from a CRC32 of its key, so it never moves between runs or machines. Each sync job
carries the full shard range in its tags, so a run with no partition (the CLI default) syncs every shard and
records a materialization for each; a run tagged ``dagster/partition: shard-03`` syncs that shard alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import dagster as dg

SHARD_COUNT = 16
SHARD_KEYS = [f"shard-{index:02d}" for index in range(SHARD_COUNT)]
SHARDS = dg.StaticPartitionsDefinition(SHARD_KEYS)

# Job tags that make "no partition given" mean "every shard" (a single-run backfill of the whole range).
ALL_SHARDS_TAGS = {
    "dagster/asset_partition_range_start": SHARD_KEYS[0],
    "dagster/asset_partition_range_end": SHARD_KEYS[-1],
}


def shard_of(key: object) -> str:
    return SHARD_KEYS[zlib.crc32(str(key).encode()) % SHARD_COUNT]


def selected_shards(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> set[str]:
    """The shards this run covers: its partition (range), or all of them when it has none."""
    run = context.run if isinstance(context, dg.AssetCheckExecutionContext) else context.run
    tags = run.tags if run else {}
    if "dagster/partition" in tags:
        return {tags["dagster/partition"]}
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if start in SHARD_KEYS and end in SHARD_KEYS:
        return set(SHARD_KEYS[SHARD_KEYS.index(start) : SHARD_KEYS.index(end) + 1])
    return set(SHARD_KEYS)


def in_shards(keys: Iterable[object], shards: set[str]) -> list[object]:
    if len(shards) == SHARD_COUNT:
        return list(keys)
    return [key for key in keys if shard_of(key) in shards]
