"""A run whose worker died with its code server is failed within minutes and frees its slots, on the
deployments whose runs are code-server subprocesses (DefaultRunLauncher).

Both paths run the deployment files' own commands as processes, on the production instance config
(deploy/dagster.yaml, PostgreSQL): the systemd daemon unit's ``ExecStart`` (the daemon starts its own code
server from a ``python_module`` workspace), and docker compose's ``user_code`` and ``daemon`` commands (the
daemon loads the code server over gRPC). A run holding the RT target's run slots and an ``rt_api`` pool slot
is started, a second one queues behind it, then every process of the code server is SIGKILLed, as a
reboot, a stopped service or a recreated container does. Once the code server is back, ``run_worker_watchdog``
must fail the lost run and the queued one must start.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml

from devkit.sandbox.server import free_port
from sync_pipelines.defs.operations.run_workers import (
    CHECK_INTERVAL_SECONDS,
    run_worker_process,
    worker_is_alive,
)
from sync_pipelines_tests.deploy.test_deploy_files import (
    DEPLOY,
    PRODUCTION_INSTANCE,
    REPO,
    VENV_BIN,
    compose,
    systemd_unit,
)
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses, environment

pytestmark = pytest.mark.timeout(900)

LOCATION_MODULE = "sync_pipelines_tests.deploy.lost_worker_location"
LOCATION = "lost_worker_location"
JOB = "rt_sync_that_waits"
# After the code server is back: the watchdog's interval, plus loading the code and a daemon loop or two.
RECOVERY_BOUND_SECONDS = CHECK_INTERVAL_SECONDS + 120


def native(command: list[str]) -> list[str]:
    """A deployment command with its program taken from this virtual environment."""
    return [str(VENV_BIN / Path(command[0]).name), *command[1:]]


def replace_after(command: list[str], flag: str, value: str) -> list[str]:
    """``command`` with the value after the last ``flag`` replaced (the code server's ``-m`` follows the
    wrapper's own ``python -m``)."""
    changed = list(command)
    changed[len(changed) - 1 - changed[::-1].index(flag) + 1] = value
    return changed


class LostWorkerDeployment:
    """The deployment's processes (``DagsterProcesses`` spawns and stops them) and the instance they share."""

    def __init__(self, home: Path, postgres_url: str, path: str) -> None:
        self.path = path
        self.processes = DagsterProcesses(home, postgres_url, {}, instance_config=PRODUCTION_INSTANCE)
        self.processes.prepare_instance()
        self.workspace = home / "workspace.yaml"
        self.grpc_port = free_port()
        if path == "systemd":
            entry = {
                "python_module": {
                    "module_name": LOCATION_MODULE,
                    "working_directory": str(REPO),
                    "location_name": LOCATION,
                }
            }
        else:
            entry = {"grpc_server": {"host": "127.0.0.1", "port": self.grpc_port, "location_name": LOCATION}}
        self.workspace.write_text(yaml.safe_dump({"load_from": [entry]}))
        self.code_server = "daemon" if path == "systemd" else "user_code"

    # -- the deployment's own commands ------------------------------------------------------------------
    def start_daemon(self) -> None:
        if self.path == "systemd":
            unit = systemd_unit(DEPLOY / "systemd" / "dagster-daemon.service")
            command = native(unit["Service"]["ExecStart"].split())
        else:
            command = native(compose()["services"]["daemon"]["command"])
        self.processes._spawn("daemon", replace_after(command, "-w", str(self.workspace)))

    def start_user_code(self) -> None:
        command = native(compose()["services"]["user_code"]["command"])
        command = replace_after(replace_after(command, "-h", "127.0.0.1"), "-p", str(self.grpc_port))
        self.processes._spawn("user_code", replace_after(command, "-m", LOCATION_MODULE))
        # Compose starts the daemon once this service's own healthcheck passes: the same command here.
        healthcheck = native(
            replace_after(
                compose()["services"]["user_code"]["healthcheck"]["test"][1:], "-p", str(self.grpc_port)
            )
        )

        def healthy() -> bool:
            self.processes._require_alive("user_code")
            return (
                subprocess.run(
                    healthcheck, env=self.processes.env, capture_output=True, timeout=60
                ).returncode
                == 0
            )

        self.wait_for("the user_code healthcheck", healthy, 180)

    def start(self) -> None:
        if self.path == "compose":
            self.start_user_code()
        self.start_daemon()

    def stop_code_server(self, worker: int) -> list[int]:
        """Stop the process that hosts the runs as its service manager would; returns the pids killed.

        systemd (the daemon unit's KillMode=mixed): SIGTERM to the daemon alone, which must exit while the run
        worker goes on, then, TimeoutStopSec later, SIGKILL to every process left. Compose (a recreated
        container, or a reboot): SIGKILL to all of them.
        """
        root = self.processes.processes[self.code_server]
        family = [psutil.Process(root.pid)]
        with contextlib.suppress(psutil.Error):
            family += family[0].children(recursive=True)
        if self.path == "systemd":
            unit = systemd_unit(DEPLOY / "systemd" / "dagster-daemon.service")["Service"]
            assert unit["KillMode"] == "mixed" and int(unit["TimeoutStopSec"]) >= 120
            root.send_signal(signal.SIGTERM)
            root.wait(60)
            time.sleep(5)
            assert psutil.pid_exists(worker), "SIGTERM to the daemon ended the run worker with it"
        for process in family:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        root.wait(30)
        psutil.wait_procs(family, timeout=30)
        return [process.pid for process in family]

    def restart_code_server(self) -> None:
        if self.path == "systemd":
            self.start_daemon()  # systemd's Restart= / the next boot
        else:
            self.start_user_code()  # compose's recreated container

    def launch(self, job: str = JOB) -> str:
        with self.instance() as instance:
            before = {run.run_id for run in instance.get_runs()}
        shown = subprocess.run(
            [str(VENV_BIN / "dagster"), "job", "launch", "-w", str(self.workspace), "-j", job],
            cwd=REPO,
            env=self.processes.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        with self.instance() as instance:
            (run_id,) = {run.run_id for run in instance.get_runs()} - before
        return run_id

    def log_tails(self, lines: int = 40) -> str:
        """The processes' last log lines, without the run queue's once-a-second line."""
        parts = []
        for name, path in self.processes.logs.items():
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            kept = [line for line in text if "Priority sorting" not in line]
            parts.append(f"----- {name} ({path}) -----\n" + "\n".join(kept[-lines:]))
        return "\n".join(parts)

    # -- observing -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with environment(self.processes.env):
            instance = dg.DagsterInstance.from_config(str(self.processes.home))
        try:
            yield instance
        finally:
            instance.dispose()

    def status(self, run_id: str) -> dg.DagsterRunStatus:
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            return run.status

    def wait_for(self, what: str, condition, timeout: float) -> float:  # noqa: ANN001
        """Poll ``condition`` until true; returns the seconds it took."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.log_tails()}")
            time.sleep(2)
        return time.monotonic() - started


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["systemd", "compose"])
def test_a_run_whose_worker_died_is_failed_within_minutes_and_frees_its_slots(
    path: str, pg_url: str, tmp_path: Path
) -> None:
    deployment = LostWorkerDeployment(tmp_path / "home", pg_url, path)
    try:
        deployment.start()
        lost = deployment.launch()
        deployment.wait_for(
            "the first run started", lambda: deployment.status(lost) == dg.DagsterRunStatus.STARTED, 240
        )
        with deployment.instance() as instance:
            worker = run_worker_process(instance, lost)
            assert worker is not None and psutil.pid_exists(worker[0])
            deployment.wait_for(
                "the run holds its rt_api slot",
                lambda: instance.event_log_storage.get_concurrency_info("rt_api").active_run_ids == {lost},
                60,
            )
        waiting = deployment.launch()
        time.sleep(5)  # a dequeue loop or more: the tag limits keep it queued behind the first run
        assert deployment.status(waiting) == dg.DagsterRunStatus.QUEUED

        killed = deployment.stop_code_server(worker[0])
        assert worker[0] in killed and not psutil.pid_exists(worker[0])
        assert deployment.status(lost) == dg.DagsterRunStatus.STARTED  # nothing else notices

        deployment.restart_code_server()
        took = deployment.wait_for(
            "the lost run failed",
            lambda: deployment.status(lost) == dg.DagsterRunStatus.FAILURE,
            RECOVERY_BOUND_SECONDS,
        )
        print(f"{path}: lost run failed {took:.0f} s after the code server restarted")
        deployment.wait_for(
            "the queued run started",
            lambda: (
                deployment.status(waiting)
                not in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
            ),
            60,
        )
        with deployment.instance() as instance:
            assert lost not in instance.event_log_storage.get_concurrency_info("rt_api").active_run_ids
            failure = instance.get_records_for_run(lost, of_type=dg.DagsterEventType.RUN_FAILURE).records
            assert failure and "is gone" in (failure[-1].event_log_entry.dagster_event.message or "")
    finally:
        deployment.processes.stop()


@pytest.mark.integration
def test_a_worker_is_alive_only_while_its_own_process_runs() -> None:
    """The watchdog's test of a pid: a live process that started before its pid was logged is the worker; a
    process that started later holds a reused pid; a finished (or zombie) one is gone."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.2)
        logged_at = time.time()
        assert worker_is_alive(process.pid, logged_at)
        assert not worker_is_alive(process.pid, logged_at - 3600)  # pid taken by a newer process
        process.kill()
        deadline = time.monotonic() + 10
        while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not worker_is_alive(process.pid, logged_at)  # a zombie until reaped
        process.wait(10)
        assert not worker_is_alive(process.pid, logged_at)
    finally:
        process.kill()
        process.wait(10)
