"""``python -m <module>`` and ``python -c <code>`` for the tests, each a fork of an interpreter that has already
imported Dagster.

A ``dagster job execute`` or ``python -m sync_pipelines.config_check`` spends 1 to 1.7 s of CPU importing Dagster,
SQLAlchemy, httpx and this project before it reads its arguments, and the suite runs over a hundred of them on two
cores. ``start`` and ``run`` hand each command to a warm interpreter (one per test process and per set of
``PYTHON*`` variables, which Python reads only when it starts): a child process that imported those modules once
and forks for each command. The fork takes the command's environment, working directory, arguments and output
files, then runs the module as ``python -m`` does (``runpy``) or the code as ``python -c`` does; its exit code
and output are the command's.

Everything that reads the environment runs after the fork: ``sync_pipelines.definitions`` (the one module whose
import reads it, see ``harness/world.py``) is never imported before it, and Dagster's own import-time readers are
daemon and webserver settings no command here uses. The quick starts' first commands, the demo, the deployment
tests and the existing-Dagster test still start real interpreters and the installed ``dagster`` executable.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# Imported once by the warm interpreter: what ``sync_pipelines.definitions`` imports, not the module itself.
PRELOADED = (
    "dagster",
    "dagster._cli",
    "dagster_postgres",
    "sqlalchemy",
    "httpx",
    "psycopg",
    "sync_pipelines.defs",
    "sync_pipelines.config_check",
)
NOT_BEFORE_A_FORK = "sync_pipelines.definitions"
REPOSITORY = Path(__file__).resolve().parents[2]
START_BOUND = 120.0
COMMAND_BOUND = 900.0


class ForkedCommand:
    """One command running in a fork of the warm interpreter (the part of ``subprocess.Popen`` the tests use)."""

    def __init__(self, interpreter: WarmInterpreter, number: int, argv: list[str], pid: int) -> None:
        self.interpreter, self.number, self.argv, self.pid = interpreter, number, argv, pid
        self.returncode: int | None = None

    def wait(self, timeout: float = COMMAND_BOUND) -> int:
        if self.returncode is None:
            self.returncode = self.interpreter.exit_code(self, timeout)
        return self.returncode

    def result(self, timeout: float = COMMAND_BOUND) -> subprocess.CompletedProcess[str]:
        """Waits for the command's end; its exit code and what it printed on stdout and stderr."""
        code = self.wait(timeout)
        outputs = [self.interpreter.output(self.number, stream) for stream in ("out", "err")]
        return subprocess.CompletedProcess(["python", *self.argv], code, *outputs)


class WarmInterpreter:
    """The child interpreter that forks a process for each command (``serve`` is its side of the pipe)."""

    def __init__(self, python_variables: dict[str, str]) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="warm-python-"))
        self.log = self.directory / "interpreter.log"
        env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
        env.update(python_variables)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=REPOSITORY,  # where ``-m`` finds this module
            )
        self.started = 0
        self.pids: dict[int, int] = {}
        self.exits: dict[int, int] = {}
        self._buffer = b""
        self._ready = False
        self._read_until(lambda: self._ready, START_BOUND, "its start")

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None) -> ForkedCommand:
        self.started += 1
        number = self.started
        request = {
            "number": number,
            "argv": argv,
            "env": env,
            "cwd": str(cwd or Path.cwd()),
            "stdout": str(self._output_path(number, "out")),
            "stderr": str(self._output_path(number, "err")),
        }
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        self._read_until(lambda: number in self.pids, START_BOUND, f"the fork of python {argv[:2]}")
        return ForkedCommand(self, number, argv, self.pids.pop(number))

    def exit_code(self, command: ForkedCommand, timeout: float) -> int:
        try:
            self._read_until(lambda: command.number in self.exits, timeout, f"python {command.argv[:2]}")
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(command.pid, signal.SIGKILL)
            raise
        return self.exits.pop(command.number)

    def output(self, number: int, stream: str) -> str:
        path = self._output_path(number, stream)
        try:
            return path.read_text(errors="replace")
        finally:
            path.unlink(missing_ok=True)

    def _output_path(self, number: int, stream: str) -> Path:
        return self.directory / f"{number}.{stream}"

    def _read_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Reads the interpreter's messages until ``done()`` holds, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            line = self._line(deadline)
            if line is None:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the warm interpreter exited ({self.process.returncode}) before {what}: "
                        + self.log.read_text(errors="replace")[-3000:]
                    )
                raise TimeoutError(f"the warm interpreter: {what} did not end within {timeout} s")
            message = json.loads(line)
            if message.get("ready"):
                self._ready = True
            elif "pid" in message:
                self.pids[message["number"]] = message["pid"]
            elif "exit_code" in message:
                self.exits[message["number"]] = message["exit_code"]

    def _line(self, deadline: float) -> bytes | None:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        """Closes the interpreter's input: it waits for the commands still running, then exits."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        for path in self.directory.iterdir():
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()


_interpreters: dict[tuple[tuple[str, str], ...], WarmInterpreter] = {}


def start(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> ForkedCommand:
    """``python <argv>`` (``["-m", module, ...]`` or ``["-c", code, ...]``) with exactly ``env`` as its
    environment, started in a fork of the warm interpreter."""
    if argv[:1] not in (["-m"], ["-c"]) or len(argv) < 2:
        raise ValueError(f"python -m <module> or -c <code> only, not {argv[:2]}")
    key = tuple(sorted((name, value) for name, value in env.items() if name.startswith("PYTHON")))
    if key not in _interpreters:
        if not _interpreters:
            atexit.register(close_all)
        _interpreters[key] = WarmInterpreter(dict(key))
    return _interpreters[key].start(argv, env, cwd)


def run(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = COMMAND_BOUND
) -> subprocess.CompletedProcess[str]:
    """``python <argv>`` run to its end, as ``subprocess.run(..., capture_output=True, text=True)`` returns it."""
    return start(argv, env, cwd).result(timeout)


def close_all() -> None:
    for interpreter in _interpreters.values():
        interpreter.close()
    _interpreters.clear()


# The warm interpreter's side.


def _run_command(request: dict[str, Any]) -> int:
    """In the fork: the command's file descriptors, environment, directory and arguments, then its module or
    code as ``__main__``; the exit code it ends with."""
    import runpy

    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    option, target, *arguments = request["argv"]
    sys.path[0] = os.getcwd() if option == "-m" else ""  # what python -m and -c put first
    try:
        if option == "-m":
            sys.argv = [target, *arguments]  # runpy puts the module's path first, as python -m does
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *arguments]
            exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fork(request: dict[str, Any], private: list[int]) -> int:
    """Forks the command's process (it never returns to the loop); the parent gets its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for fd in private:
            os.close(fd)
        code = _run_command(request)
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # what the interpreter runs at exit (flushes logging's handlers)
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """Imports ``PRELOADED``, then forks a process for each request line on stdin; answers with its pid, then its
    exit code, as JSON lines on stdout. Ends when stdin closes and every command has ended."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    assert NOT_BEFORE_A_FORK not in sys.modules, f"{NOT_BEFORE_A_FORK} was imported before a fork"
    requests: IO[bytes] = os.fdopen(os.dup(0), "rb", buffering=0)
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)

    def answer(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message).encode() + b"\n")

    running: dict[int, tuple[int, int]] = {}  # pidfd -> (request number, pid)
    answer({"ready": True})
    buffer, reading = b"", True
    while reading or running:
        watched = [*running, requests.fileno()] if reading else list(running)
        for fd in select.select(watched, [], [])[0]:
            if fd in running:
                number, pid = running.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                answer({"number": number, "exit_code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = requests.read(65536)
            reading = bool(chunk)
            buffer += chunk
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                request = json.loads(line)
                pid = _fork(request, [requests.fileno(), answers.fileno(), *running])
                running[os.pidfd_open(pid)] = (request["number"], pid)
                answer({"number": request["number"], "pid": pid})


if __name__ == "__main__":
    serve()
