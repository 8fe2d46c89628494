"""The Dagster instance of in-process runs in tests.

``dg.instance_for_test`` with the event log in memory: its default SQLite event log opens a database engine for
every event it stores (about 16 ms an event), which made the event log most of an in-process run's time. The run
storage, the temporary ``DAGSTER_HOME`` and everything else stay as ``instance_for_test`` makes them. The event log
lives as long as the instance, so a subprocess given its ``DAGSTER_HOME`` would not see it: tests whose
``dagster`` subprocesses share an instance use the SQLite one (``harness.world``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

EVENT_LOG_IN_MEMORY = {
    "event_log_storage": {"module": "dagster._core.storage.event_log", "class": "InMemoryEventLogStorage"}
}


@contextmanager
def instance_with_events_in_memory() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides=EVENT_LOG_IN_MEMORY) as instance:
        yield instance
