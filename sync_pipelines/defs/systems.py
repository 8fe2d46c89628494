"""Which systems this deployment syncs: ``SYNC_SYSTEMS``, or every system whose required variables are set.

The three syncs belong to three organisations, so a deployment usually runs one. Every job and asset stays
defined (a run with the right environment works whatever is enabled), but only the enabled systems' schedules
and sensors start RUNNING, and only their checks are in ``sync_checks``: a school with Request Tracker alone is
not woken every 15 minutes by a Bakaláři sync that cannot work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.defs.syncs import SYNCS

SETTING = "SYNC_SYSTEMS"
# Each registered sync's system and the variables without which it cannot run (its spec's).
REQUIRED_VARIABLES: dict[str, tuple[str, ...]] = {spec.system: spec.required_variables for spec in SYNCS}


def _missing(system: str, environ: Mapping[str, str]) -> list[str]:
    return [name for name in REQUIRED_VARIABLES[system] if not environ.get(name, "").strip()]


def enabled_systems(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The systems named in ``SYNC_SYSTEMS`` (each must have its variables set), else every configured one."""
    environ = os.environ if environ is None else environ
    raw = environ.get(SETTING, "").strip()
    if not raw:
        return frozenset(system for system in REQUIRED_VARIABLES if not _missing(system, environ))
    named = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [name for name in named if name not in REQUIRED_VARIABLES]
    if unknown:
        raise ConfigurationError(
            SETTING,
            f"unknown system(s) {', '.join(map(repr, unknown))}; the systems are {', '.join(REQUIRED_VARIABLES)}",
        )
    missing = {system: _missing(system, environ) for system in named}
    missing = {system: names for system, names in missing.items() if names}
    if missing:
        listed = "; ".join(f"{system} needs {', '.join(names)}" for system, names in missing.items())
        raise ConfigurationError(SETTING, f"lists system(s) whose variables are not set: {listed}")
    return frozenset(named)


def schedule_status(system: str) -> dg.DefaultScheduleStatus:
    """RUNNING for an enabled system's schedules, STOPPED for the others'."""
    return (
        dg.DefaultScheduleStatus.RUNNING if system in enabled_systems() else dg.DefaultScheduleStatus.STOPPED
    )


def sensor_status(system: str) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if system in enabled_systems() else dg.DefaultSensorStatus.STOPPED
