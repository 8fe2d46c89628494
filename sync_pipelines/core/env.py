"""Settings read from the environment at run time: text, yes/no and numbers, each refused in one sentence
naming the variable when it holds something else. Unset or blank means the default."""

from __future__ import annotations

import math
import os
import zoneinfo

from sync_pipelines.core.errors import ConfigurationError

TIMEZONE_SETTING = "SYNC_TIMEZONE"


def env_text(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_flag(name: str, default: bool) -> bool:
    """A yes/no setting: true/false, yes/no, on/off, 1/0 (any case)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(name, f"must be true or false, got {raw!r}")


def env_number(
    name: str,
    default: float | None = None,
    *,
    kind: type[int] | type[float] = float,
    minimum: float | None = None,
    above: float | None = None,
    unit: str = "",
) -> float | None:
    """A finite number of ``kind``, at least ``minimum`` (or more than ``above``; neither given: at least 0);
    ``unit`` ("seconds") words the refusals. NaN and infinities are refused: compared with a bound they pass
    every test, and a NaN rate or wait spins or hangs the run."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    units = f" {unit}" if unit else ""
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(
            name, f"must be a number{' of' + units if unit else ''}, got {raw!r}"
        ) from None
    if not math.isfinite(value):
        raise ConfigurationError(name, f"must be a finite number{units and ' of' + units}, got {raw!r}")
    if minimum is None and above is None:
        minimum = 0
    if minimum is not None and value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum:g}{units}, got {raw!r}")
    if above is not None and value <= above:
        raise ConfigurationError(name, f"must be more than {above:g}{units}, got {raw!r}")
    return value


def env_timezone() -> str:
    """``SYNC_TIMEZONE`` (default ``UTC``), the schedules' timezone: an IANA name (``Europe/Prague``), checked
    here, where it is read, so a misspelling names the variable rather than the first schedule using it."""
    name = env_text(TIMEZONE_SETTING, "UTC")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            TIMEZONE_SETTING,
            f"{name!r} is not a timezone name; use an IANA name such as UTC or Europe/Prague",
        ) from None
    return name
