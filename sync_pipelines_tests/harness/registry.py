"""What the tests expect of a registered sync, read from its spec rather than from a list of systems, so that a
sync added to the registry is tested without a test being edited."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sync_pipelines.defs.shared.sync_spec import SyncSpec


def every_variable(specs: Iterable[SyncSpec[Any]]) -> set[str]:
    """Every variable some sync of ``specs`` requires."""
    return {name for spec in specs for name in spec.required_variables}


def expected_checks(spec: SyncSpec[Any]) -> set[str]:
    """The checks ``sync_checks`` runs for ``spec``'s system alone: its own, its prerequisites and those of the
    upstream assets it reads (never ``records_synced``)."""
    own = {key.name for check in spec.checks for key in check.check_keys}
    upstream = {key.name for asset in spec.upstream for check in asset.checks for key in check.check_keys}
    return own | upstream | {prerequisite.name for prerequisite in spec.prerequisites}


def job_resources(spec: SyncSpec[Any]) -> set[str]:
    """The resources a sync job carries: its spec's, its upstream assets' (their IO managers included), the state
    store and the default IO manager."""
    upstream = {key for asset in spec.upstream for key in asset.asset.required_resource_keys}
    return set(spec.resources.resource_keys()) | upstream | {"sync_state", "io_manager"}
