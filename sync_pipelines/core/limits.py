"""How hard one external system may be driven: the numbers every layer of the HTTP client reads.

One frozen object per client, built from the system's settings (``core.settings.api_limits``): the transport
reads its timeout, pool size and answer bound; the retry policy its attempts and backoff; the pacing its
requests per second; the run guard its deadline and breaker. ``setting`` names the environment setting behind a
limit, so that an error can say what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_pipelines.core.answers import DEFAULT_MAX_ANSWER_BYTES, MAX_JSON_DEPTH

DEFAULT_DEADLINE_SECONDS = 4 * 3600.0


@dataclass(frozen=True)
class ApiLimits:
    """How hard one external system may be driven."""

    # The ceiling of requests in flight; below it, the adaptive limit follows the server's answers.
    max_concurrency: int = 8
    # False: always ``max_concurrency`` in flight (as before the adaptive limit).
    adaptive_concurrency: bool = True
    requests_per_second: float | None = None
    timeout_seconds: float = 10.0
    max_attempts: int = 5
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    # Longest answer read, counted after decompression; a longer one is that request's failure.
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    # No request is sent (and no retry waited for) past this many seconds after the run started (None: never).
    deadline_seconds: float | None = DEFAULT_DEADLINE_SECONDS
    # Circuit breaker: the run stops when ``breaker_consecutive`` requests in a row, or ``breaker_ratio`` of the
    # last ``breaker_window``, failed after their retries (0: no breaker).
    breaker_consecutive: int = 10
    breaker_window: int = 20
    breaker_ratio: float = 0.95
    # The settings' prefix (``RT``, ``BAKALARI``, ``PORTAILDF``), so that errors name the setting to change.
    settings_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive (or unset for no cap)")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_answer_bytes < 1:
            raise ValueError("max_answer_bytes must be at least 1")
        if self.deadline_seconds is not None and not self.deadline_seconds > 0:
            raise ValueError("deadline_seconds must be positive (or unset for no deadline)")

    def setting(self, name: str) -> str:
        """The environment setting behind a limit: ``MAX_ANSWER_BYTES`` -> ``PORTAILDF_MAX_ANSWER_BYTES``."""
        return f"{self.settings_prefix}_{name}" if self.settings_prefix else f"ApiLimits.{name.lower()}"

    @property
    def deadline_setting(self) -> str:
        own = self.setting("DEADLINE_SECONDS")
        return f"{own} (or SYNC_DEADLINE_SECONDS)" if self.settings_prefix else own
