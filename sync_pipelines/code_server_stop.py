"""Runs a code server (``dagster code-server start ...``) and stops it without killing its runs mid-step.

With the ``DefaultRunLauncher`` (docker compose) every run is a subprocess of the code server, and the code
server has no SIGTERM handling: ``docker compose stop`` (or ``up -d --build``) would end it, and its runs with
it, after docker's grace period, leaving the runs STARTED until the watchdog notices. Under this entrypoint a
SIGTERM (or SIGINT):

1. asks the code server over gRPC to shut down once its runs are done (it takes no new run from then on);
2. waits up to ``SYNC_CODE_SERVER_STOP_GRACE_SECONDS`` (default 240) for its run workers to end;
3. interrupts the run workers still going (SIGINT, after an engine event on the run that says why): Dagster
   fails the run as "interrupted", frees its slots, and ``run_retries`` starts it again once a code server is
   back; then waits ``INTERRUPT_WAIT_SECONDS`` more;
4. terminates what is left of the code server, then kills it.

Compose's ``stop_grace_period`` must exceed the sum, so docker's own SIGKILL never comes first.

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
# After the interrupt: time for the run to record its failure and its worker to exit.
INTERRUPT_WAIT_SECONDS = 30
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
            worker = run_worker_process(instance, run.run_id)
            if worker is not None and worker[0] in descendants:
                workers[worker[0]] = run.run_id
    return workers


def interrupt_runs(workers: dict[int, str], waited: float) -> None:
    """Records on each run why its worker is about to be interrupted."""
    with dg.DagsterInstance.get() as instance:
        for pid, run_id in workers.items():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                continue
            instance.report_engine_event(
                f"Code server stopping: run still going after {waited:.0f} s ({GRACE_VARIABLE}), "
                f"interrupting its worker (pid {pid})",
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
        time.sleep(2)
        workers = {pid: run for pid, run in workers.items() if _alive(pid)}
    if workers:
        with contextlib.suppress(Exception):  # the interrupt below matters more than its log line
            interrupt_runs(workers, time.monotonic() - started)
        for pid in workers:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).send_signal(signal.SIGINT)
        psutil.wait_procs(
            [psutil.Process(pid) for pid in workers if _alive(pid)], timeout=INTERRUPT_WAIT_SECONDS
        )
    with contextlib.suppress(psutil.Error):
        family += [child for child in process.children(recursive=True) if child not in family]
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, left = psutil.wait_procs(family, timeout=TERMINATE_WAIT_SECONDS)
    for member in left:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(left, timeout=TERMINATE_WAIT_SECONDS)


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
    beside = Path(sys.executable).with_name(command[0])
    code_server = subprocess.Popen([str(beside) if beside.is_file() else command[0], *command[1:]])
    while code_server.poll() is None and not stopping.wait(1):
        pass
    if code_server.poll() is None:
        stop(code_server, grpc_port(command), grace)
    return code_server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
