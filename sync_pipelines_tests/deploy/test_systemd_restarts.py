"""Restarting the systemd units keeps runs: during a slowed ``user_kind_sync``, a restart of the daemon and of the
webserver leaves the run's worker alive and writing, and a stop of the code server stops the run after its grace,
after which the run is failed, retried and its retry settles what it left in flight. The target and the audit
end exact.

No systemd runs here (it is not PID 1 on the test machines), so systemd's stop is emulated (``EmulatedUnit``).
Each unit's ``ExecStart`` (from deploy/systemd, its programs taken from this virtual environment) is started in a
session of its own, which stands in for the unit's cgroup: every process it starts, and every process those
start, is in that session (Dagster starts its code servers and run workers as plain subprocesses, none calls
``setsid``), as every one of them would be in the unit's cgroup. The unit's ``Environment=`` and its
``EnvironmentFile`` (the syncs' settings for ``/etc/sync_pipelines/env``, Dagster's own for
``/etc/sync_pipelines/dagster.env``) are its environment. A stop does what systemd.kill(5) says:

- ``KillMode=mixed``: SIGTERM to the main process alone; once it has exited, or ``TimeoutStopSec`` has passed,
  SIGKILL to every process left in the unit;
- ``KillMode=control-group`` (the default): SIGTERM to every process of the unit; once the main process has
  exited (or the timeout passed), SIGTERM again to what is left and up to ``TimeoutStopSec`` for it to exit; then
  SIGKILL to every process left.

``SYNC_TEST_SYSTEMD_DIR`` points the test at other unit files. With the units as they were before the code
server had a unit of its own (the daemon and the webserver each ran a code server of their own, and the runs
were subprocesses of the daemon's), the daemon's restart kills the run's worker and the test fails there,
naming it (deploy/README.md, "systemd").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import httpx
import psutil
import pytest
import sqlalchemy as sa
import yaml

from devkit.sandbox.server import free_port
from sync_pipelines.code_server_stop import GRACE_VARIABLE
from sync_pipelines.defs.operations.run_workers import (
    CHECK_INTERVAL,
    run_worker_identity,
    runs_as,
)
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.deploy.test_deploy_files import (
    PRODUCTION_INSTANCE,
    REPO,
    SYSTEMD,
    systemd_environment,
    systemd_unit,
)
from sync_pipelines_tests.deploy.test_lost_run_workers import native
from sync_pipelines_tests.harness.audit_invariant import audit_mismatches
from sync_pipelines_tests.operations.dagster_processes import (
    DagsterProcesses,
    code_server_serving,
    environment,
)
from sync_pipelines_tests.operations.graphql_api import DagsterUi, GraphQLClient
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, user_kinds_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

UNITS = Path(os.environ.get("SYNC_TEST_SYSTEMD_DIR") or SYSTEMD)
INSTALLED = "/opt/sync_pipelines/"
SYNC_ENV_FILE = "/etc/sync_pipelines/env"
# Batches of 4 with a pause after each: the run (about 200 updates) writes for about 25 s, long enough to
# restart the daemon and the webserver and to stop the code server in the middle of it; the retry writes the rest.
SLOW_RUN = {"batch_size": 4, "batch_delay_seconds": 0.5}
# Settings made shorter than their defaults (240 s, 60 s) so that the test does not wait for them.
GRACE_SECONDS = 3
WATCHDOG_CHECK_SECONDS = 5
# Process starts on a busy machine (imports), and a queue, sensor and retry loop or two.
START_BOUND = 180
RECOVERY_BOUND = 120


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class EmulatedUnit:
    """A systemd unit's ``ExecStart`` in a session of its own (its cgroup), stopped as systemd would (module
    docstring)."""

    def __init__(self, path: Path, command: list[str], env: dict[str, str], log: Path) -> None:
        service = systemd_unit(path)["Service"]
        self.name = path.stem
        self.command, self.env, self.log = command, env, log
        self.kill_mode = service.get("KillMode", "control-group")
        self.timeout_stop = float(service.get("TimeoutStopSec", "90"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def members(self) -> list[psutil.Process]:
        """Every live process of the unit: those of its session."""
        if self.process is None:
            return []
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if os.getsid(process.pid) == self.process.pid and alive(process):
                    found.append(process)
        return found

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> float:
        """systemd's stop of the unit; returns how long it took."""
        assert self.process is not None
        started = time.monotonic()
        if self.kill_mode == "mixed":
            self._signal([psutil.Process(self.process.pid)], signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.timeout_stop)
        else:
            self._signal(self.members(), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.timeout_stop)
            left = self.members()
            self._signal(left, signal.SIGTERM)
            psutil.wait_procs(left, timeout=self.timeout_stop)
        self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to every process left in the unit."""
        left = self.members()
        self._signal(left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=30)
        if self.process is not None:
            self.process.wait(30)

    @staticmethod
    def _signal(processes: list[psutil.Process], signum: int) -> None:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)


class SystemdHost:
    """Every unit of ``UNITS`` on one host: their commands rewritten for this machine, one instance."""

    def __init__(self, home: Path, postgres_url: str, sync_env: dict[str, str]) -> None:
        self.processes = DagsterProcesses(home, postgres_url, {}, instance_config=PRODUCTION_INSTANCE)
        self.processes.prepare_instance()
        self.home = home
        self.grpc_port, self.web_port = free_port(), free_port()
        self.dagster_env = dict(self.processes.env)
        self.env_files = {SYNC_ENV_FILE: {**self.dagster_env, **sync_env}}
        self.units = {path.stem: self._unit(path) for path in sorted(UNITS.glob("*.service"))}
        self.ui = DagsterUi(
            GraphQLClient(f"http://127.0.0.1:{self.web_port}/graphql"), self.processes.log_tails
        )
        with environment(self.processes.env):
            self.instance = dg.DagsterInstance.from_config(str(home))

    def _workspace(self, word: str) -> str:
        """An installed workspace file as a copy under the instance's home, its code server on this host's port."""
        if word.startswith(INSTALLED) and word.endswith(".yaml"):
            workspace = yaml.safe_load((REPO / word.removeprefix(INSTALLED)).read_text())
            for entry in workspace["load_from"]:
                if "grpc_server" in entry:
                    entry["grpc_server"]["port"] = self.grpc_port
            copy = self.home / word.removeprefix(INSTALLED).replace("/", "_")
            copy.write_text(yaml.safe_dump(workspace))
            return str(copy)
        return word

    def _unit(self, path: Path) -> EmulatedUnit:
        service = systemd_unit(path)["Service"]
        command = [self._workspace(word) for word in native(service["ExecStart"].split())]
        port = self.web_port if "dagster-webserver" in command[0] else self.grpc_port
        if "-p" in command:
            command[command.index("-p") + 1] = str(port)
        unit_env = {
            name: value for name, value in systemd_environment(path).items() if name != "DAGSTER_HOME"
        }
        env = {**unit_env, **self.env_files.get(service["EnvironmentFile"], self.dagster_env)}
        log = self.home / f"{path.stem}.log"
        self.processes.logs[path.stem] = log
        return EmulatedUnit(path, command, env, log)

    def code_server_unit(self) -> EmulatedUnit:
        found = [unit for unit in self.units.values() if "code-server" in unit.command]
        assert found, f"no unit of {UNITS} runs a code server of its own"
        return found[0]

    def start(self, *names: str) -> None:
        for name in names:
            self.units[name].start()

    def start_all(self) -> None:
        """In the order of the units' ``After=``: the code server first (when there is one), serving, then the
        others, the webserver answering with the code location loaded."""
        code_servers = [name for name, unit in self.units.items() if "code-server" in unit.command]
        self.start(*code_servers)
        if code_servers:
            self.wait_for("the code server serving", self.code_server_serving, START_BOUND)
        self.start(*(name for name in self.units if name not in code_servers))
        self.wait_for("the webserver answering", self.webserver_answers, START_BOUND)
        self.ui.wait_for_repository(START_BOUND)

    def restart(self, name: str) -> float:
        """Stops the unit, then starts it again (``systemctl restart``); returns how long the stop took."""
        took = self.units[name].stop()
        self.start(name)
        return took

    def unit_of(self, pid: int) -> str:
        """The unit that ``pid`` is a process of (in whose cgroup systemd would have it)."""
        units = [
            name for name, unit in self.units.items() if pid in {member.pid for member in unit.members()}
        ]
        assert len(units) == 1, f"pid {pid} is a process of {units or 'no unit'}"
        return units[0]

    def code_server_serving(self) -> bool:
        return code_server_serving(self.grpc_port)

    def webserver_answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.web_port}/server_info", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_all(self) -> None:
        for unit in self.units.values():
            with contextlib.suppress(Exception):
                unit.kill()
        self.instance.dispose()

    def run(self, run_id: str) -> dg.DagsterRun:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None
        return run

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.processes.log_tails()}")
            time.sleep(every)
        return time.monotonic() - started


def kinds(world: SyncWorld) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(world.databases["zlv"].replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return {str(i): {"kind": k} for i, k in connection.execute(sa.text("SELECT id, kind FROM users"))}
    finally:
        engine.dispose()


@pytest.fixture
def world(make_pg_url: Callable[[], str]) -> Iterator[SyncWorld]:
    with contextlib.ExitStack() as stack:
        yield user_kinds_world(make_pg_url, stack, size=320)


def test_restarting_the_units_keeps_the_run_and_a_run_cut_off_is_retried_and_settled(
    world: SyncWorld, make_pg_url: Callable[[], str], tmp_path: Path
) -> None:
    state_url = make_pg_url()
    sync_env = {
        **world.env,
        "SYNC_STATE_DATABASE_URL": state_url,
        GRACE_VARIABLE: str(GRACE_SECONDS),
        CHECK_INTERVAL.name: str(WATCHDOG_CHECK_SECONDS),
    }
    host = SystemdHost(tmp_path / "var_lib_sync_pipelines", make_pg_url(), sync_env)
    state = SyncStateStore.from_url(state_url)
    before = kinds(world)
    try:
        host.start_all()
        run_id = host.ui.launch("user_kind_sync", run_config={"ops": {"user_kinds": {"config": SLOW_RUN}}})

        def written() -> int:
            return len(state.audit.rows("user_kinds", run_id=run_id))

        host.wait_for("the run writing", lambda: written() > 0, START_BOUND)
        worker = run_worker_identity(host.instance, run_id)
        assert worker is not None

        home = host.unit_of(worker.pid)
        print(f"the run's worker, {worker.describe()}, is a process of {home}")
        at = written()
        for name in ("dagster-daemon", "dagster-webserver"):
            took = host.restart(name)
            print(f"{name} restarted (stopped in {took:.1f} s)")
            assert runs_as(worker), (
                f"restarting {name} killed the run's worker ({worker.describe()}, a process of {home})\n"
                + host.processes.log_tails()
            )
            assert host.run(run_id).status == dg.DagsterRunStatus.STARTED, host.processes.log_tails()
        host.wait_for("the run writing on after the restarts", lambda: written() > at, 30)

        code_server = host.code_server_unit()
        took_stop = code_server.stop()
        print(
            f"{code_server.name} stopped in {took_stop:.1f} s, the run cut off at its {GRACE_SECONDS} s grace"
        )
        assert took_stop < code_server.timeout_stop  # its own stop, not the final SIGKILL
        stopping = [
            record.dagster_event.message or ""
            for record in host.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if record.dagster_event is not None
        ]
        assert any(message.startswith("Code server stopping: run still going") for message in stopping)
        assert host.run(run_id).status == dg.DagsterRunStatus.STARTED, "the run finished before the cut"
        cut_at = written()
        code_server.start()
        took_retry = host.wait_for(
            "the cut-off run failed and retried",
            lambda: host.run(run_id).tags.get("dagster/auto_retry_run_id") is not None,
            RECOVERY_BOUND,
        )
        retry_id = host.run(run_id).tags["dagster/auto_retry_run_id"]
        print(
            f"the cut-off run was failed and retried {took_retry:.0f} s after the code server was started again"
        )
        host.wait_for("the retry finished", lambda: host.run(retry_id).is_finished, RECOVERY_BOUND)
        assert host.run(retry_id).status == dg.DagsterRunStatus.SUCCESS, host.processes.log_tails()
        assert host.webserver_answers() and all(unit.running() for unit in host.units.values())
    finally:
        host.stop_all()

    after = kinds(world)
    first, retry = (
        state.audit.rows("user_kinds", run_id=run_id),
        state.audit.rows("user_kinds", run_id=retry_id),
    )
    assert 0 < cut_at <= len(first) and retry
    assert not state.settlement.pending("user_kinds")  # the retry settled what the cut-off run left in flight
    assert audit_mismatches(before, after, [*first, *retry]) == []
    assert world.stale() == set()
