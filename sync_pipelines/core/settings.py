"""Non-secret settings read from the environment at run time, with the defaults the README gives."""

from __future__ import annotations

from sync_pipelines.core.answers import DEFAULT_MAX_ANSWER_BYTES
from sync_pipelines.core.env import env_flag, env_number
from sync_pipelines.core.http import DEFAULT_DEADLINE_SECONDS, ApiLimits


def api_limits(
    system: str,
    max_concurrency: int | None,
    requests_per_second: float | None,
    timeout_seconds: float,
    max_attempts: int,
    default_concurrency: int = 8,
) -> ApiLimits:
    """Limits for ``system`` (``RT``, ``BAKALARI``, ``PORTAILDF``): resource settings first, then
    ``<SYSTEM>_MAX_CONCURRENCY`` (the ceiling of requests in flight) / ``<SYSTEM>_REQUESTS_PER_SECOND``, then the
    defaults (no rate cap); ``<SYSTEM>_ADAPTIVE_CONCURRENCY`` (default on: the limit in flight follows the
    server's answers below the ceiling; off: the ceiling, fixed); and ``<SYSTEM>_MAX_ANSWER_BYTES`` and
    ``<SYSTEM>_DEADLINE_SECONDS`` (or ``SYNC_DEADLINE_SECONDS``)."""
    concurrency = (
        max_concurrency or env_number(f"{system}_MAX_CONCURRENCY", kind=int, minimum=1) or default_concurrency
    )
    rate = requests_per_second or env_number(f"{system}_REQUESTS_PER_SECOND", minimum=0.001)
    return ApiLimits(
        max_concurrency=int(concurrency),
        adaptive_concurrency=env_flag(f"{system}_ADAPTIVE_CONCURRENCY", True),
        requests_per_second=rate,
        timeout_seconds=timeout_seconds,
        max_attempts=max_attempts,
        max_answer_bytes=max_answer_bytes(system),
        deadline_seconds=deadline_seconds(system),
        settings_prefix=system,
    )


def max_answer_bytes(system: str) -> int:
    """``<SYSTEM>_MAX_ANSWER_BYTES``: the longest answer read from ``system``, after decompression (16 MiB)."""
    value = env_number(f"{system}_MAX_ANSWER_BYTES", kind=int, minimum=1024)
    return int(value) if value is not None else DEFAULT_MAX_ANSWER_BYTES


def deadline_seconds(system: str) -> float:
    """``<SYSTEM>_DEADLINE_SECONDS``, else ``SYNC_DEADLINE_SECONDS``, else 4 hours: how long a sync run may send
    requests to ``system``, counted from the run's start."""
    value = env_number(f"{system}_DEADLINE_SECONDS", minimum=1) or env_number(
        "SYNC_DEADLINE_SECONDS", minimum=1
    )
    return float(value) if value is not None else DEFAULT_DEADLINE_SECONDS
