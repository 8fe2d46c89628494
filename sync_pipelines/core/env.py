"""Settings read from the environment at run time: text, yes/no and numbers, each refused in one sentence
naming the variable when it holds something else. Unset or blank means the default."""

from __future__ import annotations

import os

from sync_pipelines.core.errors import ConfigurationError


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
    kind: type = float,
    minimum: float | None = None,
    above: float | None = None,
    unit: str = "",
) -> float | None:
    """A number of ``kind``, at least ``minimum`` (or more than ``above``); ``unit`` ("seconds") words the
    refusals."""
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
    if minimum is not None and value < minimum:
        raise ConfigurationError(name, f"must be at least {minimum:g}{units}, got {raw!r}")
    if above is not None and value <= above:
        raise ConfigurationError(name, f"must be more than {above:g}{units}, got {raw!r}")
    return value
