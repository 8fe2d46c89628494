"""``dagster-webserver`` and ``dagster-daemon`` as real processes on the production instance config, for tests.

The repository's ``dagster.yaml`` is copied into a fresh DAGSTER_HOME and pointed at a fresh PostgreSQL
database, so the queue limits, pools and run coordinator under test are the ones operators deploy (the run queue
only polls faster, ``QUEUE_POLLING``). As in the systemd and compose deployments, one code server
(``dagster api grpc``) loads the code location and both processes load it from there over gRPC (a workspace of one
``grpc_server`` entry): runs are launched by that code server and read their secrets there at run time, with the
sync jobs' environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import dagster as dg
import httpx
import psutil
import yaml
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._grpc.client import DagsterGrpcClient

from devkit.sandbox.server import free_port
from sync_pipelines_tests.operations.graphql_api import DagsterUi, GraphQLClient

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INSTANCE_CONFIG = REPO / "dagster.yaml"
CODE_LOCATION, LOCATION_NAME = "sync_pipelines.definitions", "sync_pipelines"
# Variables of the test process that must not leak into the deployment (each test's DAGSTER_HOME, state URL).
INHERITED_PREFIXES_DROPPED = ("DAGSTER_", "SYNC_", "RT_", "BAKALARI_", "EDURPG_", "PORTAILDF_", "ZLV_")
INHERITED_DROPPED = {"STUDENTS_DATABASE_URL"}
# The one change to the deployed instance config: the daemon's run queue looks for queued runs every second rather
# than every 5 (Dagster's default), so a test does not wait up to 5 s for each run it launches. When and in what
# order runs leave the queue (tag limits, pools) is unchanged.
QUEUE_POLLING = {"dequeue_interval_seconds": 1}
# ``dagster-daemon run`` with the backfill daemon's loop every 2 s instead of every 30 (a module constant of Dagster's,
# not a setting): a backfill's run starts within seconds of its launch instead of up to 30 s later. The other
# daemons keep their own intervals.
DAEMON_WITH_A_SHORT_BACKFILL_LOOP = (
    "import sys; import dagster._daemon.controller as controller; "
    "controller.DEFAULT_DAEMON_INTERVAL_SECONDS = 2; "
    "from dagster._daemon.cli import main; sys.exit(main())"
)


def code_server_serving(port: int) -> bool:
    """Whether a code server answers on ``port`` (a gRPC ping from this process: no Dagster CLI to start)."""
    try:
        DagsterGrpcClient(port=port, host="127.0.0.1").ping("")
    except DagsterUserCodeUnreachableError:
        return False
    return True


# Deployments running now, so a failing test can print their logs (see conftest.py).
ACTIVE: list[DagsterProcesses] = []


def deployment_environment(home: Path, postgres_url: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without its Dagster/sync settings, plus the deployment's own."""
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(INHERITED_PREFIXES_DROPPED) and name not in INHERITED_DROPPED
    }
    return {
        **base,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": postgres_url,
        "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs"),
        "PYTHONUNBUFFERED": "1",
        # The daemon reads failed runs for run_retries every second instead of every 5 (Dagster's variable): a
        # test waiting for a retry does not wait out the interval. When a run is retried is unchanged.
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
        **extra,
    }


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class DagsterProcesses:
    """A webserver and a daemon sharing one PostgreSQL-backed instance; ``ui`` talks to the webserver."""

    def __init__(
        self, home: Path, postgres_url: str, env: Mapping[str, str], instance_config: Path = INSTANCE_CONFIG
    ) -> None:
        self.home = home
        self.instance_config = instance_config
        self.env = deployment_environment(home, postgres_url, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspace = home / "workspace.yaml"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.ui = DagsterUi(GraphQLClient(f"{self.url}/graphql"), diagnostics=self.log_tails)

    # -- life cycle ------------------------------------------------------------------------------------------
    def prepare_instance(self) -> None:
        """Copy the production ``dagster.yaml`` into DAGSTER_HOME and create the storage tables once, here,
        so the webserver and the daemon do not race to create them."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "compute_logs").mkdir(exist_ok=True)
        config = yaml.safe_load(self.instance_config.read_text())
        run_coordinator = config.get("run_coordinator", {})
        if run_coordinator.get("class") == "QueuedRunCoordinator":
            run_coordinator.setdefault("config", {}).update(QUEUE_POLLING)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        with environment(self.env):
            instance = dg.DagsterInstance.from_config(str(self.home))
            try:
                instance.get_runs(limit=1)
            finally:
                instance.dispose()

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.home / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as output:
            # A session of its own: stop() ends the process with its code servers and run workers.
            self.processes[name] = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_code_server(self, timeout: float = 180, attempts: int = 5) -> None:
        """``dagster api grpc`` serving the code location, and the workspace file that points at it."""
        port = free_port()
        self._spawn(
            "code_server",
            [
                str(VENV_BIN / "dagster"),
                "api",
                "grpc",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                CODE_LOCATION,
            ],
        )
        entry = {"host": "127.0.0.1", "port": port, "location_name": LOCATION_NAME}
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": entry}]}))
        deadline = time.monotonic() + timeout
        while not code_server_serving(port):
            process = self.processes["code_server"]
            if process.poll() is not None and attempts > 1:
                # Another process bound the port between free_port() and the code server: take another.
                return self.start_code_server(max(10.0, deadline - time.monotonic()), attempts - 1)
            self._require_alive("code_server")
            if time.monotonic() > deadline:
                raise AssertionError(f"the code server did not serve within {timeout} s\n{self.log_tails()}")
            time.sleep(0.25)

    def start_webserver(self, timeout: float = 180, attempts: int = 5) -> None:
        self._spawn(
            "webserver",
            [
                str(VENV_BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                str(self.workspace),
            ],
        )
        deadline = time.monotonic() + timeout
        while True:
            process = self.processes["webserver"]
            if process.poll() is not None and attempts > 1 and self._port_was_taken():
                # Another xdist worker bound the port between free_port() and the webserver: take another.
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.ui = DagsterUi(GraphQLClient(f"{self.url}/graphql"), diagnostics=self.log_tails)
                return self.start_webserver(max(10.0, deadline - time.monotonic()), attempts - 1)
            self._require_alive("webserver")
            try:
                if httpx.get(f"{self.url}/server_info", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the webserver did not answer within {timeout} s\n{self.log_tails()}")
            time.sleep(0.5)
        # The page answers before the code location has loaded; wait until the repository is there.
        self.ui.wait_for_repository(timeout=max(10.0, deadline - time.monotonic()))

    def _port_was_taken(self) -> bool:
        log = self.logs.get("webserver")
        text = log.read_text(errors="replace").lower() if log and log.exists() else ""
        return "address already in use" in text or "errno 98" in text

    def start_daemon(self) -> None:
        self._spawn(
            "daemon",
            [sys.executable, "-c", DAEMON_WITH_A_SHORT_BACKFILL_LOOP, "run", "-w", str(self.workspace)],
        )

    def wait_for_daemon(self, timeout: float = 180) -> None:
        """Until every daemon the instance runs has sent a heartbeat (the run queue, sensors, schedules...)."""
        deadline = time.monotonic() + timeout
        while not self.ui.daemons_healthy():
            self._require_alive("daemon")
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon was not healthy within {timeout} s\n{self.log_tails()}")
            time.sleep(1)

    def _require_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with code {process.returncode}\n{self.log_tails()}")

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL whatever of it (or its descendants) is left."""
        descendants: list[psutil.Process] = []
        for process in self.processes.values():
            with contextlib.suppress(psutil.Error):
                descendants += psutil.Process(process.pid).children(recursive=True)
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()

    def stop_automation(self, keep_running: Iterable[str] = ()) -> None:
        """Stop every schedule and (non run-status) sensor but ``keep_running``, as the UI's toggles do, so no
        tick starts a run the test did not ask for."""
        keep = set(keep_running)
        repository = self.ui.repository()
        for schedule in repository["schedules"]:
            if schedule["name"] not in keep and schedule["scheduleState"]["status"] == "RUNNING":
                self.ui.stop_schedule(schedule["name"])
        for sensor in repository["sensors"]:
            if (
                sensor["name"] not in keep
                and sensor["sensorType"] == "STANDARD"
                and sensor["sensorState"]["status"] == "RUNNING"
            ):
                self.ui.stop_sensor(sensor["name"])

    # -- diagnostics -----------------------------------------------------------------------------------------
    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            parts.append(f"----- last {chars} characters of the {name} log ({path}) -----\n{text[-chars:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_deployment(
    home: Path,
    postgres_url: str,
    env: Mapping[str, str],
    keep_running: Iterable[str] = (),
    instance_config: Path = INSTANCE_CONFIG,
    before_daemon: Callable[[DagsterProcesses], None] | None = None,
) -> Iterator[DagsterProcesses]:
    """Webserver up, automation other than ``keep_running`` stopped, ``before_daemon`` called, then the daemon
    up and healthy.

    The daemon starts last so that no schedule or sensor ticks before the test has chosen which may run (and has
    done, in ``before_daemon``, what their first tick should see).
    """
    processes = DagsterProcesses(home, postgres_url, env, instance_config)
    ACTIVE.append(processes)
    try:
        processes.prepare_instance()
        processes.start_code_server()
        processes.start_webserver()
        processes.stop_automation(keep_running)
        if before_daemon is not None:
            before_daemon(processes)
        processes.start_daemon()
        processes.wait_for_daemon()
        yield processes
    finally:
        processes.stop()
        ACTIVE.remove(processes)
