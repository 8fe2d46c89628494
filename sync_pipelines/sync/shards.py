"""Stable shards: the partitions every sync uses as its batches.

A record's shard comes from a CRC32 of its key, so it never moves between runs or machines. A run with no
partition (the CLI default) syncs every shard and records a materialization for each shard it got through;
a run tagged ``dagster/partition: shard-03`` (a sensor request, a backfill, the UI) syncs that shard alone.
The jobs carry no partition-range tags: Dagster refuses a run holding both those and ``dagster/partition``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import dagster as dg

SHARD_COUNT = 16
SHARD_KEYS = [f"shard-{index:02d}" for index in range(SHARD_COUNT)]
SHARDS = dg.StaticPartitionsDefinition(SHARD_KEYS)


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
