"""The demo as a newcomer uses it: its servers stop with it on SIGTERM, and ``./dev ui``'s web UI runs on them."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devkit.sandbox.server import devkit_env, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def start_demo(tmp_path: Path, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devkit.demo", "--size", "10", "--job", "rt_user_sync", *arguments],
        cwd=tmp_path,  # the demo's home (.dagster_home/demo) goes under the test's own directory
        env=devkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], pattern: str, seconds: float = 120) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"{pattern!r} never printed:\n{''.join(lines)[-3000:]}")


def accepts_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_stops_the_demo_and_its_servers(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--keep-running")
    lines = read_until(demo, r"press Ctrl-C to stop")
    command = next(line for line in lines if "dagster dev -w workspace.yaml" in line)
    # The printed command runs in a new shell as it is: this interpreter's dagster, no venv to activate.
    assert f"{sys.executable} -m dagster dev" in command
    rt_url = re.search(r"RT_URL='([^']+)'", command).group(1)  # type: ignore[union-attr]
    assert accepts_connections(rt_url)
    stop(demo)
    assert not accepts_connections(rt_url)


def test_the_web_ui_runs_on_the_demo_servers_and_stops_with_them(tmp_path: Path) -> None:
    port = free_port()
    demo = start_demo(tmp_path, "--ui", "--port", str(port))
    try:
        lines = read_until(demo, r"web UI: http://127.0.0.1:")
        rt_url = re.search(r"RT_URL=(\S+)", "".join(lines)).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 180
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={
                        "query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
                    },
                    timeout=5,
                )
                if answer.status_code == 200 and "nodes" in answer.text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert answer is not None and answer.status_code == 200, "the web UI never answered"
        home = tmp_path / ".dagster_home" / "demo"
        # The local instance of the repository, not a production one needing DAGSTER_POSTGRES_URL.
        assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
    finally:
        stop(demo)
    assert not accepts_connections(f"http://127.0.0.1:{port}")
    assert not accepts_connections(rt_url)
