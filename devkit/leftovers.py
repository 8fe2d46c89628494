"""Run a command (the test suite) and fail when it leaves processes running behind it.

``python -m devkit.leftovers [--grace SECONDS] -- COMMAND ...`` makes this process the "child subreaper" of
everything the command starts (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): a server started by a test and never
stopped — a stand-in, a PostgreSQL, a Dagster webserver or daemon — is re-parented here when its own parent exits,
instead of vanishing under PID 1. Once the command has exited, whatever is still a descendant after a short grace
period was left behind: each is named on one line (pid and command line), stopped (SIGTERM, then SIGKILL), and the
exit code is non-zero even when the command itself passed. A command that failed keeps its own exit code.

Why a subreaper rather than matching names or an environment marker: the suite starts servers with their own
environments, sessions and double forks (``pg_ctl``), and a leak is exactly the process nobody keeps a handle on.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import psutil

PR_SET_CHILD_SUBREAPER = 36
# What a leftover process is given to stop by itself after SIGTERM, before SIGKILL.
STOP_SECONDS = 10.0
LEFTOVER_EXIT_CODE = 3


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux only); False where the kernel or libc does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants() -> list[psutil.Process]:
    """This process's living descendants (zombies are reaped, not reported)."""
    living = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                living.append(process)
            else:
                process.wait(0)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            continue
    return living


def describe(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "(exited)"
    return f"pid {process.pid}: {command[:300]}"


def stop(processes: Sequence[psutil.Process]) -> None:
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=STOP_SECONDS)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=STOP_SECONDS)


def leftovers_after(grace: float) -> list[psutil.Process]:
    """Descendants still alive ``grace`` seconds after the command ended (servers stopping take a moment)."""
    deadline = time.monotonic() + grace
    remaining = descendants()
    while remaining and time.monotonic() < deadline:
        time.sleep(0.2)
        remaining = descendants()
    return remaining


def wait_reaping(child: subprocess.Popen[bytes]) -> int:
    """Wait for ``child``'s exit code, reaping every adopted orphan that exits meanwhile (as PID 1 would: a
    process a test killed must not linger as a zombie that still "exists")."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except KeyboardInterrupt:
            continue
        except ChildProcessError:  # nothing left to wait for: the child was reaped elsewhere
            return child.returncode if child.returncode is not None else 1
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode


def run(command: Sequence[str], grace: float) -> int:
    adopted = become_subreaper()
    child = subprocess.Popen(list(command))
    # Ctrl-C reaches the whole foreground group anyway; a SIGTERM sent to this process is passed on.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    exit_code = wait_reaping(child)
    left = leftovers_after(grace)
    if not left:
        return exit_code
    where = "" if adopted else " (direct children only: this system has no child subreaper)"
    print(f"\n{len(left)} process(es) left running by {command[0]}{where}, now stopped:", file=sys.stderr)
    for process in left:
        print(f"  left running: {describe(process)}", file=sys.stderr)
    stop(left)
    return exit_code or LEFTOVER_EXIT_CODE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grace", type=float, default=15.0, help="seconds to let servers finish stopping")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args(argv)
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("a command to run is needed: python -m devkit.leftovers -- COMMAND ...")
    return run(command, arguments.grace)


if __name__ == "__main__":
    sys.exit(main())
