"""Stable shards: the partitions every sync uses as its batches.

A record's shard comes from a CRC32 of its key, so it never moves between runs or machines. A run with no
partition (the CLI default) syncs every shard; a run of one partition syncs that shard alone. Which shards a
run covers is read from its tags on the orchestration side (``defs.shared.partitions``).
"""

from __future__ import annotations

import zlib

SHARD_COUNT = 16
SHARD_KEYS = [f"shard-{index:02d}" for index in range(SHARD_COUNT)]


def shard_of(key: object) -> str:
    return SHARD_KEYS[zlib.crc32(str(key).encode()) % SHARD_COUNT]
