"""``./dev test`` runs the suite under ``devkit.leftovers``: a process the suite leaves running fails the run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def run_under_leftovers(script: str, grace: str = "1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devkit.leftovers", "--grace", grace, "--", sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_a_server_left_running_fails_the_run_named_and_stopped() -> None:
    # The grandchild outlives its parent (a double fork, as pg_ctl or a forgotten server does).
    script = textwrap.dedent(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # forgotten-server"],
                                 start_new_session=True)
        print(child.pid)
        """
    )
    completed = run_under_leftovers(script)
    pid = int(completed.stdout.split()[0])
    assert completed.returncode == 3, completed.stderr
    assert f"left running: pid {pid}:" in completed.stderr
    assert "forgotten-server" in completed.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.integration
def test_a_clean_command_keeps_its_exit_code() -> None:
    assert run_under_leftovers("print('ok')").returncode == 0
    failed = run_under_leftovers("import sys; sys.exit(5)")
    assert failed.returncode == 5
    assert "left running" not in failed.stderr


@pytest.mark.integration
def test_a_failing_command_with_leftovers_keeps_its_own_exit_code() -> None:
    script = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); sys.exit(1)"
    completed = run_under_leftovers(script)
    assert completed.returncode == 1
    assert "left running: pid" in completed.stderr


@pytest.mark.integration
def test_an_orphan_that_exits_during_the_run_is_reaped_at_once() -> None:
    # A test kills a server whose parent is gone (it was adopted): it must not stay behind as a zombie.
    script = textwrap.dedent(
        """
        import subprocess, sys, time
        middle = subprocess.Popen([sys.executable, "-c",
            "import subprocess, sys; print(subprocess.Popen(['sleep', '0.3']).pid)"], stdout=subprocess.PIPE)
        orphan = int(middle.communicate()[0])
        time.sleep(3)
        try:
            state = open(f"/proc/{orphan}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        print(state)
        """
    )
    completed = run_under_leftovers(script)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split()[-1] == "gone"
