"""A run stops within a bounded time: on the first SIGTERM whatever it waits on (a slow RT answer), and at once
with one line naming the variable when a setting would have hung it (``RT_REQUESTS_PER_SECOND=nan``)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from sync_pipelines.core.database import create_database_engine
from sync_pipelines.sync.lease import live_holder
from sync_pipelines_tests.reliability.test_rt_reliability import job_command, rt_env  # noqa: F401

pytestmark = pytest.mark.e2e

STOP_WITHIN_SECONDS = 20


def test_a_nan_request_rate_fails_the_run_at_once_naming_the_variable(rt_env, tmp_path: Path) -> None:  # noqa: F811
    rt, env, _, _ = rt_env
    env = {**env, "RT_REQUESTS_PER_SECOND": "nan"}
    # Before, the run spun at its first request until its 4-hour deadline.
    done = subprocess.run(job_command(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "RT_REQUESTS_PER_SECOND" in line]
    assert any("RT_REQUESTS_PER_SECOND: must be a finite number, got 'nan'" in line for line in lines), lines


def test_the_first_sigterm_stops_a_run_waiting_on_slow_answers(rt_env, tmp_path: Path) -> None:  # noqa: F811
    rt, env, _, state_url = rt_env
    # Every answer held for two minutes: the run waits on its first RT requests.
    rt.set_knobs(slow_rate=1.0, slow_seconds=120)
    process = subprocess.Popen(
        job_command(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    engine = create_database_engine(state_url, "SYNC_STATE_DATABASE_URL")
    try:
        deadline = time.monotonic() + 120
        # Every answer is held: once RT has counted a request, the run waits on its answer.
        while not sum(rt.stats()["requests"].values()):
            assert process.poll() is None and time.monotonic() < deadline, "the run never asked RT anything"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(STOP_WITHIN_SECONDS + 10)
        assert time.monotonic() - started < STOP_WITHIN_SECONDS
        assert process.returncode != 0
        # Its lease is free again.
        assert live_holder(engine, "rt_user_custom_fields") is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        engine.dispose()
