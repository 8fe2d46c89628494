"""What one API client counted: requests sent, retries, writes resent, and the answers by status.

One object per client, fed by the client and read by the run's metadata (``defs/shared/api_source.py``), by the
run guard's messages (the answers a system gave before its deadline passed or its breaker tripped) and by the
benchmarks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class HttpStats:
    """Counts of one client's requests; ``statuses`` by answer (``"200"``, ``"429"``) or problem (``"timed out"``)."""

    requests_made: int = 0
    retries: int = 0
    # Requests not safe to resend, sent again after the caller read that the server had not acted on them.
    resends: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def answers(self) -> str:
        """The commonest answers, for an error message: ``HTTP 503 x9, timed out x1``."""
        if not self.statuses:
            return "none"
        return ", ".join(
            f"{'HTTP ' + status if status.isdigit() else status} x{count}"
            for status, count in self.statuses.most_common(5)
        )

    def summary(self) -> dict[str, int]:
        return {"requests": self.requests_made, "retries": self.retries}
