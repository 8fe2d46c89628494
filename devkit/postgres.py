"""A throwaway PostgreSQL server for tests and benchmarks, started from the server binaries on a free port.

Each pytest-xdist worker starts its own (unique temporary directory, port from the OS, another port if that
one was taken meanwhile) and stops it at the end of its session.

PostgreSQL refuses to run as root, so as root the server runs as the unprivileged ``postgres`` OS user (created
when missing) that owns the data directory. Durability is switched off: the data dies with the process anyway.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from devkit.sandbox.server import free_port

OS_USER = "postgres"
# How many free ports to try when the chosen one was taken before the server could bind it.
BIND_ATTEMPTS = 5


def find_server_binaries() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "run ./dev setup, which installs the postgresql package"
    )


def _ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", OS_USER], check=True
        )
        return pwd.getpwnam(OS_USER)


class PostgresServer:
    def __init__(self) -> None:
        self.bin = find_server_binaries()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sync-pg-"))
        self.data = self.root / "data"
        self.user = "postgres"
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd=self.root)

    def start(self) -> PostgresServer:
        if self._as_root:
            account = _ensure_os_user()
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-locale"
        )
        for attempt in range(BIND_ATTEMPTS):
            started = self._pg_ctl_start()
            if started.returncode == 0:
                break
            log = self.root / "server.log"
            output = (
                started.stdout + started.stderr + (log.read_text(errors="replace") if log.exists() else "")
            )
            if "already in use" not in output or attempt == BIND_ATTEMPTS - 1:
                raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {output[-2000:]}")
            # Another process (e.g. another pytest-xdist worker) took the port since free_port() chose it.
            self.port = free_port()
        return self._wait_ready()

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=128MB"
        )
        log = self.root / "server.log"
        return self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start", check=False
        )

    def _wait_ready(self) -> PostgresServer:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- an outage, for tests: the server goes away and comes back on the same port with the same data -----------
    def halt(self) -> None:
        """Stop the server, keeping its data (``pg_ctl stop -m fast``): connections are refused until ``resume``."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> PostgresServer:
        """Start a ``halt``-ed server again, on the same port, and wait until it accepts connections."""
        started = self._pg_ctl_start()
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart on port {self.port}: {started.stderr[-2000:]}")
        return self._wait_ready()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The form users write (no driver named): the project must accept it as is."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
