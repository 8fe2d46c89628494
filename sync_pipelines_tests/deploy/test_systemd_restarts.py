"""Restarting the systemd units keeps runs: during a slowed ``user_kind_sync``, a restart of the daemon and then
of the webserver leaves the run going, and a restart of the code server stops it after its grace, after which the
run is failed, retried and its retry settles what it left in flight. The target and the audit end exact.

No systemd runs here (it is not PID 1 on the test machines), so systemd's stop is emulated on a process group:
each unit's ``ExecStart`` (from deploy/systemd, its programs taken from this virtual environment) runs in a
process group of its own, standing in for the unit's cgroup, with the unit's ``Environment=`` and its
``EnvironmentFile`` (the syncs' settings for ``/etc/sync_pipelines/env``, Dagster's own for
``/etc/sync_pipelines/dagster.env``). A stop sends SIGTERM to the main process (``KillMode=mixed``) or to the
whole group (the default ``control-group``), waits until the main process has exited or ``TimeoutStopSec`` has
passed, then sends SIGKILL to what is left of the group, as systemd does to what is left of the cgroup. (A process
that left its group with setsid would escape the emulation; Dagster's processes do not.)

``SYNC_TEST_SYSTEMD_DIR`` points the test at other unit files: with the units as they were before the code
server had its own unit (the daemon ran the code server and its runs), the daemon's restart killed the run and
the test fails there.
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
import pytest
import sqlalchemy as sa
import yaml

from devkit.sandbox.server import free_port
from sync_pipelines.code_server_stop import GRACE_VARIABLE
from sync_pipelines.sync.state import SyncStateStore
from sync_pipelines_tests.deploy.test_deploy_files import (
    PRODUCTION_INSTANCE,
    REPO,
    SYSTEMD,
    VENV_BIN,
    systemd_unit,
)
from sync_pipelines_tests.harness.audit_invariant import audit_mismatches
from sync_pipelines_tests.operations.dagster_processes import DagsterProcesses, environment
from sync_pipelines_tests.operations.sync_worlds import SyncWorld, user_kinds_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

UNITS = Path(os.environ.get("SYNC_TEST_SYSTEMD_DIR") or SYSTEMD)
INSTALLED = "/opt/sync_pipelines/"
SYNC_ENV_FILE = "/etc/sync_pipelines/env"
# Small batches with a pause between them: the run lasts about a minute, long enough for three restarts.
SLOW_RUN = {"batch_size": 4, "batch_delay_seconds": 1.0}
GRACE_SECONDS = 5


class EmulatedUnit:
    """A systemd unit's ``ExecStart`` as a process group, started and stopped as systemd would (module docstring)."""

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

    def stop(self) -> float:
        """systemd's stop; returns how long it took."""
        assert self.process is not None
        started = time.monotonic()
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            if self.kill_mode == "mixed":
                self.process.send_signal(signal.SIGTERM)
            else:
                os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(self.timeout_stop)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait(30)
        return time.monotonic() - started


class SystemdHost:
    """Every unit of ``UNITS`` on one host: their commands rewritten for this machine, one instance."""

    def __init__(self, home: Path, postgres_url: str, sync_env: dict[str, str]) -> None:
        self.processes = DagsterProcesses(home, postgres_url, {}, instance_config=PRODUCTION_INSTANCE)
        self.processes.prepare_instance()
        self.home = home
        self.grpc_port, self.web_port = free_port(), free_port()
        dagster_env = dict(self.processes.env)
        self.env_files = {SYNC_ENV_FILE: {**dagster_env, **sync_env}}
        self.dagster_env = dagster_env
        self.units = {path.stem: self._unit(path) for path in sorted(UNITS.glob("*.service"))}

    def _path(self, word: str) -> str:
        if word.startswith(INSTALLED + ".venv/bin/"):
            return str(VENV_BIN / Path(word).name)
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
        command = [self._path(word) for word in service["ExecStart"].split()]
        port = self.web_port if "dagster-webserver" in command[0] else self.grpc_port
        if "-p" in command:
            command[command.index("-p") + 1] = str(port)
        env = self.env_files.get(service["EnvironmentFile"], self.dagster_env)
        log = self.home / f"{path.stem}.log"
        self.processes.logs[path.stem] = log
        return EmulatedUnit(path, command, dict(env), log)

    def start(self, name: str) -> None:
        unit = self.units[name]
        unit.start()
        if "code-server" in unit.command:
            self.wait_for(f"{name} serving", self.code_server_answers, 180)
        if "dagster-webserver" in unit.command[0]:
            self.wait_for(f"{name} answering", self.webserver_answers, 180)

    def start_all(self) -> None:
        # In the order of the units' After=: the code server first when there is one.
        for name in sorted(self.units, key=lambda name: "code-server" not in name):
            self.start(name)

    def restart(self, name: str) -> float:
        took = self.units[name].stop()
        self.start(name)
        return took

    def code_server_answers(self) -> bool:
        shown = subprocess.run(
            [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.grpc_port)],
            capture_output=True,
            timeout=60,
        )
        return shown.returncode == 0

    def webserver_answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.web_port}/server_info", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_all(self) -> None:
        for unit in self.units.values():
            if unit.process is not None and unit.process.poll() is None:
                with contextlib.suppress(Exception):
                    unit.kill_mode, unit.timeout_stop = "control-group", 20
                    unit.stop()

    @contextlib.contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with environment(self.processes.env):
            instance = dg.DagsterInstance.from_config(str(self.home))
        try:
            yield instance
        finally:
            instance.dispose()

    def run(self, run_id: str) -> dg.DagsterRun:
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            return run

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.processes.log_tails()}")
            time.sleep(1)
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
        yield user_kinds_world(make_pg_url, stack, size=400)


def test_restarting_the_units_keeps_the_run_and_a_run_cut_off_is_retried_and_settled(
    world: SyncWorld, make_pg_url: Callable[[], str], tmp_path: Path
) -> None:
    state_url = make_pg_url()
    sync_env = {**world.env, "SYNC_STATE_DATABASE_URL": state_url, GRACE_VARIABLE: str(GRACE_SECONDS)}
    host = SystemdHost(tmp_path / "var_lib_sync_pipelines", make_pg_url(), sync_env)
    state = SyncStateStore.from_url(state_url)
    before = kinds(world)
    try:
        host.start_all()
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump({"ops": {"user_kinds": {"config": SLOW_RUN}}}))
        workspace = next(
            word for unit in host.units.values() for word in unit.command if word.endswith(".yaml")
        )
        launched = subprocess.run(
            [
                str(VENV_BIN / "dagster"),
                "job",
                "launch",
                "-w",
                workspace,
                "-j",
                "user_kind_sync",
                "-c",
                str(config),
            ],
            cwd=REPO,
            env=host.units["dagster-daemon"].env | host.env_files[SYNC_ENV_FILE],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert launched.returncode == 0, launched.stdout + launched.stderr
        with host.instance() as instance:
            (run_id,) = [run.run_id for run in instance.get_runs()]

        def written() -> int:
            return len(state.audit_rows("user_kinds", run_id=run_id))

        host.wait_for("the run writing", lambda: written() > 0, 240)
        for name in ("dagster-daemon", "dagster-webserver"):
            at = written()
            took = host.restart(name)
            print(f"{name} restarted (stopped in {took:.1f} s) with the run going")
            assert host.run(run_id).status == dg.DagsterRunStatus.STARTED, host.processes.log_tails()
            host.wait_for(f"the run writing on after the {name} restart", lambda at=at: written() > at, 60)

        code_server = next(name for name in host.units if "code-server" in name)
        took = host.units[code_server].stop()
        print(f"{code_server} stopped in {took:.1f} s, the run cut off at its {GRACE_SECONDS} s grace")
        assert took < host.units[code_server].timeout_stop  # its own stop, not the final SIGKILL
        assert host.run(run_id).status == dg.DagsterRunStatus.STARTED, "the run finished before the cut"
        cut_at = written()
        host.start(code_server)
        took = host.wait_for(
            "the cut-off run failed and retried",
            lambda: host.run(run_id).tags.get("dagster/auto_retry_run_id") is not None,
            180,
        )
        retry_id = host.run(run_id).tags["dagster/auto_retry_run_id"]
        print(f"the cut-off run was failed and retried {took:.0f} s after the code server was back")
        host.wait_for("the retry finished", lambda: host.run(retry_id).is_finished, 300)
        assert host.run(retry_id).status == dg.DagsterRunStatus.SUCCESS, host.processes.log_tails()
    finally:
        host.stop_all()

    after = kinds(world)
    first, retry = (
        state.audit_rows("user_kinds", run_id=run_id),
        state.audit_rows("user_kinds", run_id=retry_id),
    )
    assert 0 < cut_at <= len(first) and retry
    assert not state.pending("user_kinds")  # the retry settled what the cut-off run left in flight
    assert audit_mismatches(before, after, [*first, *retry]) == []
    assert world.stale() == set()
