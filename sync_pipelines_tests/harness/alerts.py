"""A local webhook receiver, and the failure alert evaluated on a failed run, as the daemon would."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg

from sync_pipelines.defs.operations.alerts import sync_failure_alert


class AlertReceiver:
    """A real HTTP server on 127.0.0.1 keeping every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/sync"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alert_on_failed_run(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """Evaluate ``sync_failure_alert`` on ``result``'s failure."""
    failure_event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_failure_alert",
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    sync_failure_alert(context)
