"""Runs a code server (``dagster code-server start ...``) and stops it without killing its runs mid-step.

With the ``DefaultRunLauncher`` (docker compose's ``user_code``, systemd's ``dagster-code-server`` unit) every run
is a subprocess of the code server. Under this entrypoint a SIGTERM (or SIGINT) to it alone, as docker (through
its init) and systemd (``KillMode=mixed``) send it:

1. asks the code server over gRPC to take no new run and to exit once its runs are done;
2. waits up to ``SYNC_CODE_SERVER_STOP_GRACE_SECONDS`` (default 240) for its run workers to end;
3. stops the run workers still going (SIGKILL, after an engine event on the run that says why), as a crash would:
   the run stays STARTED until ``run_worker_watchdog`` of the next code server fails it (within about a
   minute), freeing its slots, and ``run_retries`` starts it again, which settles what the killed run left in
   flight. (An interrupt would fail the run at once, while this code server is going away: Dagster's run
   retries, which need the code location to create the retry, then give up on it for good.)
4. terminates what is left of the code server, then kills it.

The service manager's own timeout (compose's ``stop_grace_period``, systemd's ``TimeoutStopSec``) must exceed
the sum, so its SIGKILL never comes first.

Usage: ``python -m sync_pipelines.code_server_stop dagster code-server start -p 4000 -m ...``
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
from dagster._grpc.client import DagsterGrpcClient

from sync_pipelines.core.settings import CODE_SERVER_STOP_GRACE
from sync_pipelines.defs.operations.run_workers import run_worker_process

GRACE_VARIABLE = CODE_SERVER_STOP_GRACE.name
# How often the run workers are looked for (in /proc) during the grace period.
WORKER_POLL_SECONDS = 0.5
# After SIGKILL to the run workers left, before the code server itself is stopped.
KILL_WAIT_SECONDS = 10
# After SIGTERM to the code server itself, before SIGKILL.
TERMINATE_WAIT_SECONDS = 10


def grace_seconds() -> float:
    return CODE_SERVER_STOP_GRACE.number()


def grpc_port(command: list[str]) -> int:
    """The ``-p``/``--port`` of the code-server command (Dagster's default, 4000, when absent)."""
    for flag in ("-p", "--port"):
        if flag in command[:-1]:
            return int(command[command.index(flag) + 1])
    return 4000


def run_workers(code_server: psutil.Process) -> dict[int, str]:
    """The code server's run workers still alive: pid -> run id (the pid each run's worker logged)."""
    try:
        descendants = {process.pid for process in code_server.children(recursive=True)}
    except psutil.Error:
        return {}
    if not descendants or not os.environ.get("DAGSTER_HOME"):
        return {}
    workers: dict[int, str] = {}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
            pid = run_worker_process(instance, run.run_id)
            if pid is not None and pid in descendants:
                workers[pid] = run.run_id
    return workers


def record_stop(workers: dict[int, str], waited: float) -> None:
    """Records on each run why its worker is about to be stopped, and what happens next."""
    with dg.DagsterInstance.get() as instance:
        for pid, run_id in workers.items():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                continue
            instance.report_engine_event(
                f"Code server stopping: run still going after {waited:.0f} s ({GRACE_VARIABLE}), stopping its "
                f"worker (pid {pid}); run_worker_watchdog fails the run once a code server is back, and "
                "run_retries starts it again",
                run,
            )


def stop(code_server: subprocess.Popen[bytes], port: int, grace: float) -> None:
    """Steps 1-4 of the module docstring, each bounded."""
    print(f"code_server_stop: stopping; runs get {grace:.0f} s to finish", file=sys.stderr, flush=True)
    # Found before the shutdown request: its server processes may exit, and their workers be re-parented.
    process = psutil.Process(code_server.pid)
    family = [process]
    with contextlib.suppress(psutil.Error):
        family += process.children(recursive=True)
    try:
        workers: dict[int, str] | None = run_workers(process)
    except Exception as error:  # the instance's database unreachable: no run can be told apart
        print(
            f"code_server_stop: cannot read the runs from the instance ({type(error).__name__}): check "
            "DAGSTER_POSTGRES_URL; waiting for the code server to exit on its own instead",
            file=sys.stderr,
            flush=True,
        )
        workers = None
    with contextlib.suppress(Exception):
        DagsterGrpcClient(port=port, host="127.0.0.1").shutdown_server(timeout=15)
    started = time.monotonic()
    if workers is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code_server.wait(grace)  # it exits by itself once its runs are done
        workers = {}
    while workers and time.monotonic() - started < grace:
        time.sleep(WORKER_POLL_SECONDS)
        workers = {pid: run for pid, run in workers.items() if _alive(pid)}
    with contextlib.suppress(psutil.Error):
        family += [child for child in process.children(recursive=True) if child not in family]
    if workers:
        with contextlib.suppress(Exception):  # stopping the workers matters more than its log line
            record_stop(workers, time.monotonic() - started)
        # The code server first: it would report a worker it saw die as a failed run at once, while it is going
        # away, and the retry would be lost. Then the workers with their own subprocesses (their step log
        # capture: killed before their worker, they would stay its unreaped zombies), their runs left STARTED
        # for the watchdog.
        of_workers = set(workers)
        for pid in workers:
            with contextlib.suppress(psutil.Error):
                of_workers |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
        _kill([member for member in family if member.pid not in of_workers])
        _kill([member for member in family if member.pid in of_workers])
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, left = psutil.wait_procs(family, timeout=TERMINATE_WAIT_SECONDS)
    _kill(left)


def _kill(processes: list[psutil.Process]) -> None:
    for member in processes:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(processes, timeout=KILL_WAIT_SECONDS)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(command: list[str]) -> int:
    if not command:
        print("usage: python -m sync_pipelines.code_server_stop <code-server command>", file=sys.stderr)
        return 2
    grace = grace_seconds()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    # The program of this Python environment first (a virtual environment need not be on PATH).
    program = command[0]
    if os.sep not in program and (beside := Path(sys.executable).with_name(program)).is_file():
        program = str(beside)
    code_server = subprocess.Popen([program, *command[1:]])
    while code_server.poll() is None and not stopping.wait(1):
        pass
    if code_server.poll() is None:
        stop(code_server, grpc_port(command), grace)
    return code_server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
