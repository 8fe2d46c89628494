"""Settings read from the environment at run time: text, yes/no and numbers, each refused in one sentence
naming the variable when it holds something else. Unset or blank means the default.

Every numeric setting goes through one rule, ``env_number`` (a ``NumberSetting`` declares a setting's bounds
once, for the code that reads it and for the configuration check alike)."""

from __future__ import annotations

import math
import os
import zoneinfo
from dataclasses import dataclass

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


NUMBER_TEXT_MAX = 40  # longer text is no number a setting takes (and is not handed to int())


def _figure(number: float) -> str:
    """``2147483``, ``0.001``: whole numbers in full."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _amount(number: float, unit: str) -> str:
    """``1 day``, ``0 seconds``, ``0.001``."""
    if not unit:
        return _figure(number)
    return f"{_figure(number)} {unit.removesuffix('s') if number == 1 else unit}"


def env_number(
    name: str,
    default: float | None = None,
    *,
    kind: type[int] | type[float] = float,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    unit: str = "",
) -> float | None:
    """The one rule every numeric setting is read by: a finite number of ``kind`` (``int``: a whole one), at least
    ``minimum`` (or more than ``above``; neither given: at least 0) and at most ``maximum``; unset or blank is
    ``default``. Anything else is refused in one line naming the variable (``ConfigurationError``); ``unit``
    ("seconds") words it. NaN and infinities are refused: compared with a bound they pass every test, and a NaN
    rate or wait spins or hangs the run."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    units = f" {unit}" if unit else ""
    what = "a whole number" if kind is int else "a number"
    shown = (
        repr(raw) if len(raw) <= NUMBER_TEXT_MAX else f"{raw[:NUMBER_TEXT_MAX]!r}... ({len(raw)} characters)"
    )
    try:
        value = kind(raw) if len(raw) <= NUMBER_TEXT_MAX else None
    except ValueError:
        value = None
    if value is None:
        raise ConfigurationError(name, f"must be {what}{' of' + units if unit else ''}, got {shown}")
    if not math.isfinite(value):
        raise ConfigurationError(name, f"must be a finite number{units and ' of' + units}, got {shown}")
    if minimum is None and above is None:
        minimum = 0
    if minimum is not None and value < minimum:
        raise ConfigurationError(name, f"must be at least {_amount(minimum, unit)}, got {shown}")
    if above is not None and value <= above:
        raise ConfigurationError(name, f"must be more than {_amount(above, unit)}, got {shown}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(name, f"must be at most {_amount(maximum, unit)}, got {shown}")
    return value


@dataclass(frozen=True)
class NumberSetting:
    """A numeric setting declared once: its variable, default and bounds, read by ``env_number`` wherever it is
    used and checked by ``python -m sync_pipelines.config_check`` from the same declaration."""

    name: str
    default: float | None = None
    kind: type[int] | type[float] = float
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    unit: str = ""

    def read(self) -> float | None:
        """The value, or the default while unset; ``ConfigurationError`` naming the variable otherwise."""
        return env_number(
            self.name,
            self.default,
            kind=self.kind,
            minimum=self.minimum,
            above=self.above,
            maximum=self.maximum,
            unit=self.unit,
        )

    def number(self) -> float:
        """``read`` for a setting that has a default."""
        value = self.read()
        if value is None:
            raise TypeError(f"{self.name} has no default: use read()")
        return value

    def bounds(self) -> str:
        """The values it takes, in the words of the README's table: ``1 to 36500 days``, ``more than 0, up to
        87600 hours``, ``at least 0.001``; ``whole`` for a whole number."""
        units = f" {self.unit}" if self.unit else ""
        whole = "a whole number, " if self.kind is int else ""
        if self.above is not None:
            low = f"more than {_figure(self.above)}"
            high = f", up to {_figure(self.maximum)}" if self.maximum is not None else ""
        else:
            least = _figure(self.minimum or 0)
            low = least if self.maximum is not None else f"at least {least}"
            high = f" to {_figure(self.maximum)}" if self.maximum is not None else ""
        return f"{whole}{low}{high}{units}"


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
