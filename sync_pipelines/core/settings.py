"""Non-secret numeric settings read from the environment at run time: each declared once, with the default and the
bounds the README gives (``NumberSetting``), read by the code that uses it and checked by
``python -m sync_pipelines.config_check`` from the same declaration.

A bound stands where a value past it would break something or means nothing: retention days past what dates can
count, PostgreSQL timeouts past what its settings hold (2,147,483 seconds), waits of more than a day.
"""

from __future__ import annotations

from sync_pipelines.core.answers import DEFAULT_MAX_ANSWER_BYTES
from sync_pipelines.core.env import NumberSetting, env_flag
from sync_pipelines.core.limits import DEFAULT_DEADLINE_SECONDS, ApiLimits

DAY = 86_400.0
POSTGRES_SECONDS_MAX = 2_147_483.0  # lock_timeout, statement_timeout are milliseconds in a 32-bit integer
RETENTION_DAYS_MAX = 36_500.0  # a hundred years

DEADLINE = NumberSetting("SYNC_DEADLINE_SECONDS", None, minimum=1, maximum=7 * DAY, unit="seconds")
LEASE_WAIT = NumberSetting("SYNC_LEASE_WAIT_SECONDS", 0.0, minimum=0, maximum=DAY, unit="seconds")
PLAN_MAX_AGE = NumberSetting("SYNC_PLAN_MAX_AGE_HOURS", 24.0, above=0, maximum=87_600, unit="hours")
LOCK_TIMEOUT = NumberSetting(
    "SYNC_LOCK_TIMEOUT_SECONDS", 60.0, minimum=0, maximum=POSTGRES_SECONDS_MAX, unit="seconds"
)
STATEMENT_TIMEOUT = NumberSetting(
    "SYNC_STATEMENT_TIMEOUT_SECONDS", 900.0, minimum=0, maximum=POSTGRES_SECONDS_MAX, unit="seconds"
)
CONNECT_TIMEOUT = NumberSetting(
    "SYNC_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0, maximum=POSTGRES_SECONDS_MAX, unit="seconds"
)
RUN_RETENTION = NumberSetting(
    "SYNC_RUN_RETENTION_DAYS", 90, kind=int, minimum=1, maximum=RETENTION_DAYS_MAX, unit="days"
)
AUDIT_RETENTION = NumberSetting(
    "SYNC_AUDIT_RETENTION_DAYS", 365, kind=int, minimum=1, maximum=RETENTION_DAYS_MAX, unit="days"
)
PLAN_RETENTION = NumberSetting(
    "SYNC_PLAN_RETENTION_DAYS", 30, kind=int, minimum=1, maximum=RETENTION_DAYS_MAX, unit="days"
)
WRITE_AHEAD_RETENTION = NumberSetting(
    "SYNC_WRITE_AHEAD_RETENTION_DAYS", 30, kind=int, minimum=1, maximum=RETENTION_DAYS_MAX, unit="days"
)
# Row errors a run may have, in percent of its records, and still succeed (``sync.record_errors``).
MAX_RECORD_ERRORS = NumberSetting(
    "SYNC_MAX_RECORD_ERRORS_PERCENT", 10.0, minimum=0, maximum=100, unit="percent"
)
CODE_SERVER_STOP_GRACE = NumberSetting(
    "SYNC_CODE_SERVER_STOP_GRACE_SECONDS", 240.0, minimum=0, maximum=DAY, unit="seconds"
)

# The settings every system's runs, or the project's own jobs, read whatever the system: a wrong one is reported by
# the configuration check (the systems' own are in their ``SyncSpec.settings``).
SHARED_SETTINGS = (
    DEADLINE,
    LEASE_WAIT,
    PLAN_MAX_AGE,
    LOCK_TIMEOUT,
    STATEMENT_TIMEOUT,
    CONNECT_TIMEOUT,
    RUN_RETENTION,
    AUDIT_RETENTION,
    PLAN_RETENTION,
    WRITE_AHEAD_RETENTION,
    MAX_RECORD_ERRORS,
    CODE_SERVER_STOP_GRACE,
)


def api_settings(system: str) -> tuple[NumberSetting, ...]:
    """``system``'s (``RT``, ``BAKALARI``, ``PORTAILDF``) numeric API settings: the ceiling of requests in flight,
    requests per second, the longest answer and how long a run may send requests (``SYNC_DEADLINE_SECONDS`` when
    unset)."""
    return (
        NumberSetting(f"{system}_MAX_CONCURRENCY", None, kind=int, minimum=1, maximum=1000),
        NumberSetting(f"{system}_REQUESTS_PER_SECOND", None, minimum=0.001, maximum=100_000),
        NumberSetting(
            f"{system}_MAX_ANSWER_BYTES", DEFAULT_MAX_ANSWER_BYTES, kind=int, minimum=1024, maximum=2**31
        ),
        NumberSetting(f"{system}_DEADLINE_SECONDS", None, minimum=1, maximum=7 * DAY, unit="seconds"),
        DEADLINE,
    )


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
    concurrency_setting, rate_setting, *_ = api_settings(system)
    concurrency = max_concurrency or concurrency_setting.read() or default_concurrency
    rate = requests_per_second or rate_setting.read()
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
    return int(api_settings(system)[2].number())


def deadline_seconds(system: str) -> float:
    """``<SYSTEM>_DEADLINE_SECONDS``, else ``SYNC_DEADLINE_SECONDS``, else 4 hours: how long a sync run may send
    requests to ``system``, counted from the run's start."""
    own, shared = api_settings(system)[3:]
    value = own.read() or shared.read()
    return float(value) if value is not None else DEFAULT_DEADLINE_SECONDS
