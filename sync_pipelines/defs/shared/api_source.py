"""A source that talks to an HTTP API: it keeps what its client did, reported with the run's figures.

The engine's ``SyncSource`` knows nothing of HTTP; the three domains read or write through an ``ApiClient``, and an
operator reading a run's metadata wants its request count, retries, resent writes and how the limit of requests
in flight moved.
"""

import dagster as dg

from sync_pipelines.core.concurrency import ConcurrencySummary
from sync_pipelines.core.http import ApiClient
from sync_pipelines.sync.source import SyncSource


class ApiSource(SyncSource):
    """A ``SyncSource`` whose client's figures (``record_api``) join the run's metadata (``api_metadata``)."""

    requests: int = 0
    retries: int = 0
    # Writes sent again after reading that the target did not hold them (a lost answer, a 5xx).
    resends: int = 0
    in_flight: ConcurrencySummary | None = None

    def record_api(self, api: ApiClient) -> None:
        """Keep an ``ApiClient``'s request count, retries and how its requests in flight adapted."""
        self.requests, self.retries, self.resends = api.requests_made, api.retries, api.stats.resends
        self.in_flight = api.concurrency_summary()

    def api_metadata(self) -> dict[str, dg.MetadataValue]:
        """``record_api``'s figures as run metadata (the limit of requests in flight and what moved it)."""
        metadata: dict[str, dg.MetadataValue] = {
            "requests_made": dg.MetadataValue.int(self.requests),
            "retries": dg.MetadataValue.int(self.retries),
            "writes_resent": dg.MetadataValue.int(self.resends),
        }
        if self.in_flight is not None:
            metadata["requests_in_flight"] = dg.MetadataValue.text(in_flight_line(self.in_flight))
        return metadata


def in_flight_line(summary: ConcurrencySummary) -> str:
    """How the limit of requests in flight moved, in one line: a diagnostic, so a short entry among the run's
    figures rather than a JSON document filling the asset's page."""
    signals = ", ".join(f"{name} {count}" for name, count in summary.get("signals", {}).items()) or "none"
    return (
        f"{summary['mode']}: ended at {summary['limit']} of {summary['ceiling']} "
        f"(lowest {summary['lowest']}, highest {summary['highest']}) over {summary['answers']} answers; "
        f"slowing signals: {signals}"
    )
