"""A run whose worker died with its code server is failed within minutes and frees its slots, on the
deployments whose runs are code-server subprocesses (DefaultRunLauncher).

Both paths run the deployment files' own commands as processes, on the production instance config
(deploy/dagster.yaml, PostgreSQL): the systemd code server's and daemon's units' ``ExecStart``, and docker
compose's ``user_code`` and ``daemon`` commands (in both, the daemon loads the code server over gRPC). A run
holding the RT target's run slots and an ``rt_api`` pool slot is started, a second one queues behind it, then
every process of the code server is SIGKILLed, as a reboot, a crash, or a stop timeout's final SIGKILL does.
Once the code server is back, ``run_worker_watchdog`` must fail the lost run, the queued one must start, and
``run_retries`` must retry the lost one.

The watchdog must also leave a live worker alone when the wall clock steps (an NTP correction on a VM): tested
by emulating what psutil's ``create_time`` (the old watchdog's test) does under a 30 s forward step.
"""

from __future__ import annotations

import contextlib
import os
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
    CHECK_INTERVAL,
    IDENTITY_MESSAGE,
    WorkerIdentity,
    fail_runs_with_lost_workers,
    run_worker_identity,
    run_worker_process,
)
from sync_pipelines_tests.deploy.test_deploy_files import (
    CODE_SERVER_UNIT,
    DEPLOY,
    PRODUCTION_INSTANCE,
    REPO,
    SYSTEMD,
    VENV_BIN,
    compose,
    systemd_unit,
)
from sync_pipelines_tests.operations.dagster_processes import (
    DagsterProcesses,
    code_server_serving,
    environment,
)

pytestmark = pytest.mark.timeout(900)

LOCATION_MODULE = "sync_pipelines_tests.deploy.lost_worker_location"
LOCATION = "lost_worker_location"
JOB = "rt_sync_that_waits"
# The watchdog checks every 5 s here (60 s by default), so that the test does not wait for its interval.
WATCHDOG_CHECK_SECONDS = 5
# After the code server is back: the watchdog's interval, plus loading the code and a daemon loop or two.
RECOVERY_BOUND_SECONDS = WATCHDOG_CHECK_SECONDS + 120
# What the daemon's run queue logs on each pass over the queued runs.
DEQUEUE_PASS = "Priority sorting"


def native(command: list[str]) -> list[str]:
    """A deployment command with its programs taken from this virtual environment."""
    return [
        str(VENV_BIN / Path(word).name)
        if word.startswith("/opt/sync_pipelines/.venv/bin/") or i == 0
        else word
        for i, word in enumerate(command)
    ]


def unit_command(name: str) -> list[str]:
    return native(systemd_unit(SYSTEMD / name)["Service"]["ExecStart"].split())


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
        self.processes = DagsterProcesses(
            home,
            postgres_url,
            {CHECK_INTERVAL.name: str(WATCHDOG_CHECK_SECONDS)},
            instance_config=PRODUCTION_INSTANCE,
        )
        self.processes.prepare_instance()
        self.workspace = home / "workspace.yaml"
        self.grpc_port = free_port()
        entry = {"grpc_server": {"host": "127.0.0.1", "port": self.grpc_port, "location_name": LOCATION}}
        self.workspace.write_text(yaml.safe_dump({"load_from": [entry]}))
        self.code_server = "user_code"

    # -- the deployment's own commands ------------------------------------------------------------------
    def start_daemon(self) -> None:
        if self.path == "systemd":
            command = unit_command("dagster-daemon.service")
        else:
            command = native(compose()["services"]["daemon"]["command"])
        self.processes._spawn("daemon", replace_after(command, "-w", str(self.workspace)))

    def start_user_code(self) -> None:
        if self.path == "systemd":
            command = unit_command(CODE_SERVER_UNIT.name)
        else:
            command = native(compose()["services"]["user_code"]["command"])
        command = replace_after(replace_after(command, "-h", "127.0.0.1"), "-p", str(self.grpc_port))
        self.processes._spawn("user_code", replace_after(command, "-m", LOCATION_MODULE))
        # Compose starts the daemon once this service's own healthcheck passes: the same command here.
        healthcheck = native(
            replace_after(
                compose()["services"]["user_code"]["healthcheck"]["test"][1:], "-p", str(self.grpc_port)
            )
        )

        def serving() -> bool:
            self.processes._require_alive("user_code")
            return code_server_serving(self.grpc_port)

        self.wait_for("the code server serving", serving, 180)
        checked = subprocess.run(
            healthcheck, env=self.processes.env, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def start(self) -> None:
        self.start_user_code()
        self.start_daemon()

    def kill_code_server(self) -> list[int]:
        """SIGKILL every process of the code server, its run workers included (a reboot, a crash, the final
        SIGKILL of a stop that timed out); returns their pids."""
        root = self.processes.processes[self.code_server]
        family = [psutil.Process(root.pid)]
        with contextlib.suppress(psutil.Error):
            family += family[0].children(recursive=True)
        for process in family:
            with contextlib.suppress(psutil.Error):
                process.kill()
        root.wait(30)
        psutil.wait_procs(family, timeout=30)
        return [process.pid for process in family]

    def restart_code_server(self) -> None:
        self.start_user_code()  # systemd's Restart= or the next boot; compose's recreated container

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

    def dequeue_passes(self) -> int:
        """How many passes the daemon's run queue has made over queued runs (it logs one line each)."""
        log = self.processes.logs["daemon"]
        return log.read_text(errors="replace").count(DEQUEUE_PASS) if log.exists() else 0

    def log_tails(self, lines: int = 40) -> str:
        """The processes' last log lines, without the run queue's once-a-second line."""
        parts = []
        for name, path in self.processes.logs.items():
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            kept = [line for line in text if DEQUEUE_PASS not in line]
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

    def run_tags(self, run_id: str) -> dict[str, str]:
        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            return dict(run.tags)

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
            time.sleep(0.25)
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
            assert worker is not None and psutil.pid_exists(worker)
            deployment.wait_for(
                "the worker recorded its identity",
                lambda: run_worker_identity(instance, lost) == WorkerIdentity.of(worker),
                60,
            )
            deployment.wait_for(
                "the run holds its rt_api slot",
                lambda: instance.event_log_storage.get_concurrency_info("rt_api").active_run_ids == {lost},
                60,
            )
        passes = deployment.dequeue_passes()
        waiting = deployment.launch()
        # Two passes of the run queue after it was queued: the tag limits keep it behind the first run.
        deployment.wait_for(
            "two passes of the run queue", lambda: deployment.dequeue_passes() >= passes + 2, 60
        )
        assert deployment.status(waiting) == dg.DagsterRunStatus.QUEUED

        killed = deployment.kill_code_server()
        assert worker in killed and not psutil.pid_exists(worker)
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
        # run_retries starts it again (queued behind the run that holds the target now): the daemon's retry loop
        # reads the failure from the event log, which took over 60 s on a 2-core machine busy with 3 test workers.
        retried = deployment.wait_for(
            "the lost run retried",
            lambda: deployment.run_tags(lost).get("dagster/auto_retry_run_id") is not None,
            180,
        )
        print(f"{path}: lost run retried {took + retried:.0f} s after the code server restarted")
        if path == "compose":
            # The daemon service's healthcheck, through the image's entrypoint, against this running daemon.
            check = [
                str(DEPLOY / "compose_env.py") if word == "/opt/dagster/compose_env.py" else word
                for word in compose()["services"]["daemon"]["healthcheck"]["test"][1:]
            ]
            check = [str(VENV_BIN / word) if (VENV_BIN / word).is_file() else word for word in check]
            shown = subprocess.run(
                check, env=deployment.processes.env, capture_output=True, text=True, timeout=120
            )
            assert shown.returncode == 0, shown.stdout + shown.stderr
    finally:
        deployment.processes.stop()


def record_worker(instance: dg.DagsterInstance, pid: int, identity: WorkerIdentity | None) -> str:
    """A STARTED run of the DefaultRunLauncher whose worker is ``pid``: the events its worker logs first (Dagster's
    pid, then the identity ``run_worker_executor`` records, unless ``identity`` is None)."""
    from dagster._core.events import EngineEventData
    from dagster._core.storage.tags import GRPC_INFO_TAG

    run = instance.create_run_for_job(
        dg.GraphDefinition(name="watched", node_defs=[]).to_job(), tags={GRPC_INFO_TAG: "{}"}
    )
    instance.handle_run_event(  # type: ignore[attr-defined]
        run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name)
    )
    instance.report_engine_event(
        f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
    )
    if identity is not None:
        instance.report_engine_event(IDENTITY_MESSAGE, run, EngineEventData(metadata=identity.metadata()))
    return run.run_id


@pytest.mark.integration
def test_a_clock_step_never_fails_a_live_run_and_a_dead_worker_is_still_failed(
    ephemeral_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulated step: psutil's create_time is the boot time (which the kernel derives from the wall clock)
    plus the process's start ticks, so after a 30 s step forward both the wall clock and every process's
    create_time read 30 s later. The old test (create_time <= the time the pid was logged + 5 s) took the live
    worker for a newer process holding a reused pid; the watchdog now reads neither clock."""
    instance = ephemeral_instance
    worker = subprocess.Popen(["sleep", "120"])
    other = subprocess.Popen(["sleep", "120"])
    try:
        identity = WorkerIdentity.of(worker.pid)
        assert identity is not None
        live = record_worker(instance, worker.pid, identity)
        logged_at = time.time()
        not_yet_identified = record_worker(instance, other.pid, None)

        step = 30.0
        boot_time, wall = psutil.boot_time(), time.time
        monkeypatch.setattr(psutil, "boot_time", lambda: boot_time + step)
        monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: boot_time + step, raising=False)
        monkeypatch.setattr(time, "time", lambda: wall() + step)
        created = psutil.Process(worker.pid).create_time()
        stepped = boot_time + step + identity.start_ticks / os.sysconf("SC_CLK_TCK")
        assert created > logged_at + 5 or stepped > logged_at + 5, "the old rule would have taken it for dead"

        failed, alive = fail_runs_with_lost_workers(instance)
        assert failed == [] and len(alive) == 2, alive
        assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED

        # A pid taken over by another process: another start tick, so the run's worker is gone, and the process
        # holding the pid now is not touched.
        reused = record_worker(instance, other.pid, WorkerIdentity(identity.boot_id, other.pid, 1))
        worker.kill()
        worker.wait(10)
        failed, alive = fail_runs_with_lost_workers(instance)
        assert sorted(failed) == sorted([live, reused])
        assert [entry for entry in alive if entry.startswith(not_yet_identified)]
        assert other.poll() is None
        for run_id in failed:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    finally:
        for process in (worker, other):
            process.kill()
            process.wait(10)


@pytest.mark.unit
def test_a_worker_identity_reads_proc_as_the_kernel_writes_it(tmp_path: Path) -> None:
    """Field 22 of /proc/<pid>/stat, after a command name that holds spaces and parentheses; a zombie has exited."""
    from sync_pipelines.defs.operations.run_workers import runs_as

    (tmp_path / "proc" / "42").mkdir(parents=True)
    boot = tmp_path / "boot_id"
    boot.write_text("b00t\n")
    fields = ["S", *[str(n) for n in range(4, 22)], "987654", "0"]
    stat = tmp_path / "proc" / "42" / "stat"
    stat.write_text(f"42 (python -m a) b) {' '.join(fields)}\n")
    identity = WorkerIdentity.of(42, tmp_path / "proc", boot)
    assert identity == WorkerIdentity("b00t", 42, 987654)
    assert runs_as(identity, tmp_path / "proc", boot)
    stat.write_text(f"42 (python -m a) b) Z {' '.join(fields[1:])}\n")
    assert not runs_as(identity, tmp_path / "proc", boot)
    boot.write_text("another boot\n")
    assert not runs_as(WorkerIdentity("b00t", 42, 987654), tmp_path / "proc", boot)
    assert WorkerIdentity.of(43, tmp_path / "proc", boot) is None


@pytest.mark.unit
def test_a_wrong_watchdog_interval_is_reported_and_the_sensor_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read when the code server loads the code: a wrong value must not stop the load (the refusal itself is
    checked with every numeric setting, operations_unit/test_numeric_settings.py)."""
    from sync_pipelines.defs.operations.run_workers import CHECK_INTERVAL, _check_interval_or_default
    from sync_pipelines.defs.syncs import SYNCS
    from sync_pipelines.defs.systems import configuration_problems

    def problems() -> list[str]:
        return [
            str(problem)
            for problem in configuration_problems(SYNCS, {})
            if problem.setting == CHECK_INTERVAL.name
        ]

    monkeypatch.setenv(CHECK_INTERVAL.name, "5")
    assert _check_interval_or_default() == 5 and problems() == []
    monkeypatch.setenv(CHECK_INTERVAL.name, "soon")
    assert _check_interval_or_default() == 60
    assert problems() == [
        f"{CHECK_INTERVAL.name}: must be a whole number of seconds, got 'soon'; run_worker_watchdog checks every 60 s"
    ]
