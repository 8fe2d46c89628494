"""Stopping docker compose's ``user_code`` service (SIGTERM, as ``docker compose stop`` or ``up -d --build``
sends) lets its runs finish, or stops them with a recorded reason (the run left STARTED for the watchdog of the
next code server, which fails it and lets run_retries retry it), within its ``stop_grace_period``, and leaves no
process behind.

The service's own command runs as a process (no container engine here), on the production instance config,
with the grace period shortened through ``SYNC_CODE_SERVER_STOP_GRACE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from sync_pipelines.code_server_stop import (
    GRACE_VARIABLE,
    KILL_WAIT_SECONDS,
    TERMINATE_WAIT_SECONDS,
    grace_seconds,
    grpc_port,
)
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines_tests.deploy.lost_worker_location import SHORT_RUN_SECONDS
from sync_pipelines_tests.deploy.test_deploy_files import CODE_SERVER_UNIT, compose, systemd_unit
from sync_pipelines_tests.deploy.test_lost_run_workers import LostWorkerDeployment

pytestmark = pytest.mark.timeout(600)

# Above SHORT_RUN_SECONDS, with room for a busy machine: the short run ends within it.
GRACE_SECONDS = 15
# For the run that never ends: the stop waits the whole grace period before it interrupts the run, so a short one.
GRACE_SECONDS_FOR_A_RUN_THAT_WAITS = 3


def stop_grace_period_seconds() -> float:
    """docker compose's ``stop_grace_period`` of ``user_code`` (a duration such as ``330s`` or ``5m30s``)."""
    text = str(compose()["services"]["user_code"]["stop_grace_period"])
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text, f"unreadable stop_grace_period {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


@pytest.mark.unit
def test_compose_waits_longer_than_the_code_server_stop_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GRACE_VARIABLE, raising=False)
    command = compose()["services"]["user_code"]["command"]
    assert command[:3] == ["python", "-m", "sync_pipelines.code_server_stop"]
    assert grpc_port(command) == 4000
    # the gRPC shutdown request's timeout, then each bounded wait of the stop
    assert stop_grace_period_seconds() > 15 + grace_seconds() + 2 * KILL_WAIT_SECONDS + TERMINATE_WAIT_SECONDS
    # The systemd unit runs the same wrapper, its TimeoutStopSec above the same sum.
    unit = systemd_unit(CODE_SERVER_UNIT)["Service"]
    assert unit["KillMode"] == "mixed"
    assert "-m sync_pipelines.code_server_stop" in unit["ExecStart"]
    assert (
        float(unit["TimeoutStopSec"]) > 15 + grace_seconds() + 2 * KILL_WAIT_SECONDS + TERMINATE_WAIT_SECONDS
    )


@pytest.mark.unit
def test_a_bad_grace_period_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GRACE_VARIABLE, "4 minutes")
    with pytest.raises(ConfigurationError, match=GRACE_VARIABLE):
        grace_seconds()
    monkeypatch.setenv(GRACE_VARIABLE, "60")
    assert grace_seconds() == 60


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("job", "expected", "grace"),
    [
        ("rt_sync_that_ends", dg.DagsterRunStatus.SUCCESS, GRACE_SECONDS),
        ("rt_sync_that_waits", dg.DagsterRunStatus.STARTED, GRACE_SECONDS_FOR_A_RUN_THAT_WAITS),
    ],
)
def test_stopping_user_code_lets_runs_finish_or_interrupts_them_within_the_grace_period(
    job: str, expected: dg.DagsterRunStatus, grace: int, pg_url: str, tmp_path: Path
) -> None:
    deployment = LostWorkerDeployment(tmp_path / "home", pg_url, "compose")
    deployment.processes.env[GRACE_VARIABLE] = str(grace)
    try:
        deployment.start()  # user_code, then the daemon that dequeues the run
        run_id = deployment.launch(job)
        deployment.wait_for(
            "the run started", lambda: deployment.status(run_id) == dg.DagsterRunStatus.STARTED, 240
        )
        root = deployment.processes.processes["user_code"]
        family = [psutil.Process(root.pid), *psutil.Process(root.pid).children(recursive=True)]

        stopped_at, stopped_at_wall = time.monotonic(), time.time()
        root.send_signal(signal.SIGTERM)  # to the entrypoint alone, as docker does to PID 1
        root.wait(15 + grace + 2 * KILL_WAIT_SECONDS + TERMINATE_WAIT_SECONDS + 15)
        took = time.monotonic() - stopped_at
        print(f"{job}: user_code stopped {took:.0f} s after SIGTERM")

        _, left = psutil.wait_procs(family, timeout=5)
        assert not left, f"left running: {[p.pid for p in left]}\n{deployment.log_tails()}"
        assert deployment.status(run_id) == expected, deployment.log_tails()
        with deployment.instance() as instance:
            logs = [
                record.event_log_entry.dagster_event.message or ""
                for record in instance.get_records_for_run(run_id).records
                if record.event_log_entry.dagster_event
            ]
            if expected == dg.DagsterRunStatus.SUCCESS:
                assert not instance.event_log_storage.get_concurrency_info("rt_api").active_run_ids
                record = instance.get_run_record_by_id(run_id)
                assert record is not None and record.end_time is not None
                assert record.end_time > stopped_at_wall, (
                    "the run ended before the stop: nothing was let finish"
                )
        if expected == dg.DagsterRunStatus.SUCCESS:
            assert took < SHORT_RUN_SECONDS + TERMINATE_WAIT_SECONDS + 15
        else:
            assert took >= grace
            assert any("Code server stopping" in message and GRACE_VARIABLE in message for message in logs)
            assert any("run_worker_watchdog fails the run" in message for message in logs), "\n".join(logs)
    finally:
        with contextlib.suppress(Exception):
            deployment.processes.stop()
