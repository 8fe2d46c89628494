"""A code location made of a list of sync specs: what ``sync_pipelines.definitions`` builds from the registered
ones (``defs.syncs``), and what a test builds from them and a sync of its own, by the same path.

Each sync is built from its spec (``defs.shared.sync_builder``); each upstream asset the syncs read is defined
once, with its checks and resources, however many syncs read it; the shared resources and the operations jobs
(``sync_checks``, ``record_history``, run history upkeep) join them. Nothing here names a system.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from sync_pipelines.defs.operations.definitions import operations_definitions
from sync_pipelines.defs.shared import definitions as shared
from sync_pipelines.defs.shared.sync_builder import BuiltSync, build_sync
from sync_pipelines.defs.shared.sync_spec import SyncSpec
from sync_pipelines.defs.shared.upstream import Upstream


@dataclass(frozen=True)
class CodeLocation:
    """The definitions of a code location, and each sync's, by system (as named in ``SYNC_SYSTEMS``)."""

    syncs: Mapping[str, BuiltSync]
    definitions: dg.Definitions


def distinct(specs: Sequence[SyncSpec[Any]]) -> None:
    """Refuse two specs with one system, target or job: one would hide the other (a programming error)."""
    for name in ("system", "target", "job"):
        values = [getattr(spec, name) for spec in specs]
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise ValueError(f"two registered syncs have the {name} {', '.join(map(repr, repeated))}")


def upstream_assets(specs: Sequence[SyncSpec[Any]]) -> list[Upstream]:
    """Each upstream asset the syncs read, once, in the order they name them."""
    found: dict[str, Upstream] = {}
    for spec in specs:
        for upstream in spec.upstream:
            known = found.setdefault(upstream.name, upstream)
            if known is not upstream:
                raise ValueError(f"two upstream assets are named {upstream.name!r}")
    return list(found.values())


def code_location(specs: Sequence[SyncSpec[Any]]) -> CodeLocation:
    distinct(specs)
    built = {spec.system: build_sync(spec) for spec in specs}
    definitions = dg.Definitions.merge(
        shared.defs,
        *(upstream.definitions() for upstream in upstream_assets(specs)),
        *(sync.definitions for sync in built.values()),
        operations_definitions(specs),
    )
    return CodeLocation(built, definitions)
