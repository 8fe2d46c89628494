"""The embedded default: run the sync jobs against local sandbox servers and SQLite databases, no accounts needed.

``./dev demo`` (or ``python -m devkit.demo`` from the repository root) starts the sandbox servers on 127.0.0.1, seeds sample
databases under ``.dagster_home/demo``, and runs each job with ``dagster job execute`` exactly as an operator
would. ``--keep-running`` leaves the servers up and prints the command that opens them in the web UI; ``--ui``
(``./dev ui``) opens the web UI on them itself, with the repository's local instance (``dagster.yaml``). The
servers stop with the demo, on Ctrl-C or SIGTERM alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devkit.sandbox import edurpg, zlv
from devkit.sandbox.databases import seed_students
from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.sample_data import generate_students
from devkit.sandbox.server import DemoSetup, SandboxProcess
from sync_pipelines.core.job_command import job_execute_command

DEMO_HOME = Path(".dagster_home") / "demo"
REPO = Path(__file__).resolve().parents[1]


def stop_on_sigterm() -> None:
    """SIGTERM ends the demo as Ctrl-C does, so the ``finally`` that stops the servers runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def web_ui(env: dict[str, str], port: int) -> int:
    """``dagster dev`` with this interpreter's dagster (no venv to activate), until it ends or is interrupted."""
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"), "-p", str(port)]
    servers = " ".join(
        f"{name}={value}" for name, value in env.items() if name.endswith("_URL") and "://127." in value
    )
    print(f"stand-in servers and databases: {servers}")
    print(f"web UI: http://127.0.0.1:{port} (Ctrl-C to stop)", flush=True)
    process = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def setup_rt(home: Path, size: int) -> DemoSetup:
    """An RT sandbox (started) and a SQLite students database in the legacy schema."""
    students_url = f"sqlite:///{home / 'students.sqlite'}"
    seed_students(students_url, generate_students(size), schema="legacy")
    rt = SandboxProcess("rt", ["--size", str(size), "--latency-ms", "5"])
    rt.start()  # before its URL goes into the environment: start() may move it to another port
    return DemoSetup(
        [rt], {"STUDENTS_DATABASE_URL": students_url, "RT_URL": rt.url, "RT_TOKEN": DEFAULT_TOKEN}
    )


# job name -> how to prepare (and start) its sandbox servers and databases
JOBS: dict[str, Callable[[Path, int], DemoSetup]] = {
    "rt_user_sync": setup_rt,
    "bakalari_sync": edurpg.demo_setup,
    "user_kind_sync": zlv.demo_setup,
}


def setup_for(job: str) -> Callable[[Path, int], DemoSetup]:
    return JOBS[job]


def run_job(job: str, env: dict[str, str]) -> int:
    command = job_execute_command(job)
    print(f"\n$ dagster job execute -m sync_pipelines.definitions -j {job}", flush=True)
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    summary = [
        line.split(" - ", 5)[-1]
        for line in completed.stdout.splitlines() + completed.stderr.splitlines()
        if (" - INFO - " in line or " - ERROR - " in line or " - WARNING - " in line) and job in line
    ]
    for line in summary[-12:]:
        print(f"  {line[:200]}")
    outcome = "succeeded" if completed.returncode == 0 else f"FAILED (exit {completed.returncode})"
    print(f"{job} {outcome} in {time.monotonic() - started:.1f} s", flush=True)
    return completed.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__)
    parser.add_argument("--job", choices=sorted(JOBS), action="append", help="job(s) to run (default: all)")
    parser.add_argument("--size", type=int, default=200, help="sample records per system")
    parser.add_argument("--keep-running", action="store_true", help="leave the sandbox servers running")
    parser.add_argument(
        "--ui", action="store_true", help="run no job; open the web UI on the sandbox servers"
    )
    parser.add_argument("--port", type=int, default=3000, help="the web UI's port (with --ui)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    home = DEMO_HOME.resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the local instance: SQLite under home
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    env.pop("SYNC_STATE_DATABASE_URL", None)
    setups: dict[str, DemoSetup] = {}
    failures = 0
    try:
        for job in args.job or list(JOBS):
            setups[job] = setup_for(job)(home, args.size)
        exports = {key: value for setup in setups.values() for key, value in setup.env.items()}
        if args.ui:
            return web_ui({**env, **exports}, args.port)
        for job, setup in setups.items():
            failures += run_job(job, {**env, **setup.env}) != 0
        print(f"\nrun history and the sync state are under {home}")
        if args.keep_running:
            print(
                "sandbox servers are running; to explore in the web UI, in another shell (or use ./dev ui):"
            )
            exports["DAGSTER_HOME"] = str(home)
            print(
                "  "
                + " ".join(f"{key}={value!r}" for key, value in exports.items())
                + f" {sys.executable} -m dagster dev -w workspace.yaml"
            )
            print("press Ctrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for setup in setups.values():
            for sandbox in setup.sandboxes:
                sandbox.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
