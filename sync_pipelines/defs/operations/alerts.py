"""``sync_failure_alert``: a failed run is logged and, when ``SYNC_ALERT_WEBHOOK_URL`` is set, POSTed as JSON."""

import os
from datetime import datetime, timezone
from typing import Any

import dagster as dg
import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from sync_pipelines.core.redaction import Redactor, environment_secrets

# Every environment variable that may hold a secret: their values are masked in the alert.
SECRET_VARIABLES = (
    "RT_TOKEN",
    "BAKALARI_PASSWORD",
    "PORTAILDF_PASSWORD",
    "STUDENTS_DATABASE_URL",
    "EDURPG_DATABASE_URL",
    "ZLV_DATABASE_URL",
    "SYNC_STATE_DATABASE_URL",
    "DAGSTER_POSTGRES_URL",
    "SYNC_ALERT_WEBHOOK_URL",
)


def secret_redactor() -> Redactor:
    """The project's one redactor, over every secret setting of the environment (these and any other named like
    a password, token or database URL, ``PGPASSWORD`` included, and the passwords inside those URLs)."""
    return Redactor([*(os.environ.get(name) for name in SECRET_VARIABLES), *environment_secrets()])


def run_url(run_id: str) -> str:
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "").strip() or "http://localhost:3000"
    return f"{base.rstrip('/')}/runs/{run_id}"


def failure_text(context: dg.RunFailureSensorContext) -> str:
    """The errors of the failed steps, or the run's own failure message when no step failed."""
    errors = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        cause = error.cause if error and error.cause else error
        errors.append(f"{event.step_key}: {cause.message.strip() if cause else event.message}")
    return "\n".join(errors) or (context.failure_event.message or "run failed")


def alert_payload(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    redact = secret_redactor()
    run = context.dagster_run
    return {  # every text of the payload through the redactor (the error, and the URL for good measure)
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": run.tags.get("dagster/partition"),
        "error": redact(failure_text(context))[:4000],
        "run_url": redact(run_url(run.run_id)),
        "failed_at": datetime.now(timezone.utc).isoformat(),
    }


def post_alert(url: str, payload: dict[str, Any]) -> None:
    for attempt in Retrying(
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type(httpx.HTTPError),
        reraise=True,
    ):
        with attempt:
            httpx.post(url, json=payload, timeout=10).raise_for_status()


@dg.run_failure_sensor(
    name="sync_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Logs every failed run of this code location and POSTs it to SYNC_ALERT_WEBHOOK_URL when set.",
)
def sync_failure_alert(context: dg.RunFailureSensorContext) -> None:
    payload = alert_payload(context)
    context.log.error(f"sync run failed: {payload['job']} {payload['run_id']}: {payload['error'][:500]}")
    url = os.environ.get("SYNC_ALERT_WEBHOOK_URL", "").strip()
    if not url:
        return
    try:
        post_alert(url, payload)
    except httpx.HTTPError as error:
        context.log.error(f"the alert webhook could not be reached: {secret_redactor()(error)}")
