"""Shared machinery of the sandbox servers: fault knobs, request counters, and ways to run them.

Each sandbox (RT, Bakalari, Portail DF) is an ``aiohttp.web`` application built on ``SandboxApp``. The
knobs and counters live behind ``/_sandbox/*`` admin endpoints so that a test, the demo and the benchmarks
drive a server the same way whether it runs in a thread of the test process or in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
from aiohttp import web

from sync_pipelines.core.transport import verifying_context

ADMIN_PREFIX = "/_sandbox"
# The directory holding the ``devkit`` package: subprocesses running ``python -m devkit...`` need it on their path.
REPO_ROOT = Path(__file__).resolve().parents[2]
# How many times a server asks for another free port when the one it was given was taken in the meantime
# (another pytest-xdist worker may bind the same port between ``free_port`` closing it and the server binding it).
BIND_ATTEMPTS = 5
# How long a stopping stand-in waits for the answers in flight before it cuts them (aiohttp waits 60 s by default):
# an answer a test held back (``slow_seconds``) would otherwise hold the stop, and the test, until then.
STOP_GRACE_SECONDS = 1.0


@dataclass
class Knobs:
    """How badly the sandbox behaves. Every field can be changed while the server runs."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # A server's own pace, as an application server has it: each request holds one of ``workers`` (None: as
    # many as come) for ``request_cost_ms`` of server time (added to ``latency_ms``, which is the network's and
    # costs no worker); requests beyond the workers wait their turn, queued, as they do in front of a real
    # server's worker pool, rather than being refused. ``request_cpu`` spends that time on the CPU (a busy
    # loop, as bcrypt does) instead of sleeping, so that a stand-in on the client's machine competes for it.
    request_cost_ms: float = 0.0
    workers: int | None = None
    request_cpu: bool = False
    # Answer ``Connection: close`` and close every connection (a stock RT, Starlet's --max-keepalive-reqs 1).
    close_connection: bool = False
    # Requests in flight above this number are refused with 429 and Retry-After (None: unlimited).
    max_concurrency: int | None = None
    retry_after_seconds: float = 1.0
    # Probability that a request gets a 500, 502 or 503 instead of its answer.
    error_rate: float = 0.0
    # Probability that the connection is closed without an answer.
    drop_rate: float = 0.0
    # Probability that a 200 answer carries a broken body (an HTML error page or truncated JSON).
    malformed_rate: float = 0.0
    # Probability that an answer is held for ``slow_seconds`` (to exceed a client's timeout).
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    # The next N requests (admin endpoints excepted) get 429 with Retry-After: a burst of overload.
    burst_429: int = 0
    # The Retry-After header sent with a 429 as it is, when set (e.g. "nan", "soon"): overrides the number above.
    retry_after_header: str | None = None
    # Requests whose method, path, query or body hold one of these texts (case-insensitive, URL-decoded) are
    # answered 400 with a JSON body that repeats what was sent, and ``echo_text`` (a server naming the person):
    # what many real servers put in a 400.
    echo_errors_for: list[str] = field(default_factory=list)
    echo_text: str = ""
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown sandbox knobs: {sorted(unknown)}; known: {sorted(known)}")
        for name, value in changes.items():
            setattr(self, name, value)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SandboxApp:
    """Base of a sandbox server: subclasses add routes in ``add_routes`` and state in ``state_snapshot``."""

    system = "sandbox"

    def __init__(self, knobs: Knobs | None = None) -> None:
        self.knobs = knobs or Knobs()
        self.random = random.Random(self.knobs.seed)
        self.counters: Counter[str] = Counter()
        self.status_counters: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy_workers = 0
        self.max_queued = 0
        self._queued = 0
        self._worker_free: asyncio.Condition | None = None
        self.app = web.Application(middlewares=[self._faults_middleware], client_max_size=64 * 1024 * 1024)
        self.app.on_response_prepare.append(self._close_connection)
        self.app.router.add_get(f"{ADMIN_PREFIX}/stats", self._admin_stats)
        self.app.router.add_post(f"{ADMIN_PREFIX}/reset", self._admin_reset)
        self.app.router.add_get(f"{ADMIN_PREFIX}/knobs", self._admin_get_knobs)
        self.app.router.add_post(f"{ADMIN_PREFIX}/knobs", self._admin_set_knobs)
        self.app.router.add_get(f"{ADMIN_PREFIX}/state", self._admin_get_state)
        self.app.router.add_post(f"{ADMIN_PREFIX}/state", self._admin_set_state)
        self.add_routes(self.app.router)

    # -- to be provided by each system -------------------------------------------------------------
    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def state_snapshot(self) -> dict[str, Any]:
        """The server's whole state as JSON, for tests to compare with what a sync should have produced."""
        raise NotImplementedError

    def apply_state_change(self, change: dict[str, Any]) -> None:
        """Change state from a test (e.g. a hand edit in RT, a new student in Bakalari)."""
        raise NotImplementedError

    # -- fault injection -----------------------------------------------------------------------------
    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        )
        endpoint = f"{request.method} {route}"
        self.counters[endpoint] += 1
        knobs = self.knobs
        if knobs.burst_429 > 0:
            knobs.burst_429 -= 1
            return self._too_many()
        limit = knobs.max_concurrency
        if limit is not None and self.in_flight >= limit:
            return self._too_many()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if knobs.request_cost_ms or knobs.workers:
                await self._work(knobs)
            delay = knobs.latency_ms + (self.random.uniform(0, knobs.jitter_ms) if knobs.jitter_ms else 0.0)
            if knobs.slow_rate and self.random.random() < knobs.slow_rate:
                delay += knobs.slow_seconds * 1000
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if knobs.drop_rate and self.random.random() < knobs.drop_rate:
                self.status_counters["dropped"] += 1
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # aiohttp discards the request without writing an answer
            if knobs.echo_errors_for:
                echoed = await self._echo_error(request, knobs)
                if echoed is not None:
                    self.status_counters["400"] += 1
                    return echoed
            if knobs.error_rate and self.random.random() < knobs.error_rate:
                status = self.random.choice([500, 502, 503])
                self.status_counters[str(status)] += 1
                return web.Response(
                    status=status,
                    text=f"<html><body><h1>{status} Server Error</h1></body></html>",
                    content_type="text/html",
                )
            try:
                response = await handler(request)
            except web.HTTPException as error:
                self.status_counters[str(error.status)] += 1
                raise
            if (
                knobs.malformed_rate
                and response.status == 200
                and self.random.random() < knobs.malformed_rate
            ):
                self.status_counters["malformed"] += 1
                if self.random.random() < 0.5:
                    return web.Response(
                        status=200, text="<html><body>Proxy error</body></html>", content_type="text/html"
                    )
                return web.Response(status=200, text='{"truncated": ', content_type="application/json")
            self.status_counters[str(response.status)] += 1
            return response
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _echo_error(request: web.Request, knobs: Knobs) -> web.Response | None:
        """A 400 repeating what ``request`` sent, when it holds one of ``echo_errors_for`` (else None). The body
        is read here and kept by aiohttp, so a handler reached afterwards reads it as usual."""
        body = (await request.read()).decode("utf-8", errors="replace") if request.body_exists else ""
        sent = unquote_plus(f"{request.method} {request.path_qs} {body}").lower()
        if not any(text.lower() in sent for text in knobs.echo_errors_for if text):
            return None
        message = f"Invalid request {knobs.echo_text}: {request.path_qs} {body}".strip()
        return web.json_response(
            {
                # The shapes servers give a 400 in: OAuth's (Bakaláři's login), RT's and DRF's.
                "error": "invalid_request",
                "error_description": message,
                "message": message,
                "detail": {"query": dict(request.query), "body": body, "about": knobs.echo_text},
            },
            status=400,
        )

    async def _work(self, knobs: Knobs) -> None:
        """Wait for one of ``workers`` (queued, first come first served) and hold it ``request_cost_ms``. The
        worker count may change while requests wait: the new count applies to the next one served."""
        if self._worker_free is None:
            self._worker_free = asyncio.Condition()
        free = self._worker_free
        async with free:
            self._queued += 1
            self.max_queued = max(self.max_queued, self._queued)
            try:
                await free.wait_for(lambda: not knobs.workers or self.busy_workers < knobs.workers)
            finally:
                self._queued -= 1
            self.busy_workers += 1
        try:
            if knobs.request_cost_ms:
                if knobs.request_cpu:
                    end = time.perf_counter() + knobs.request_cost_ms / 1000
                    while time.perf_counter() < end:  # a worker's CPU: nothing else runs meanwhile
                        pass
                else:
                    await asyncio.sleep(knobs.request_cost_ms / 1000)
        finally:
            async with free:
                self.busy_workers -= 1
                free.notify_all()

    async def _close_connection(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.knobs.close_connection and not request.path.startswith(ADMIN_PREFIX):
            await request.read()  # a body left unread would turn the close into a reset
            response.force_close()
            response.headers["Connection"] = "close"  # the headers are prepared before this hook runs

    def _too_many(self) -> web.Response:
        self.status_counters["429"] += 1
        retry_after = self.knobs.retry_after_seconds
        header = str(int(retry_after)) if float(retry_after).is_integer() else f"{retry_after:g}"
        if self.knobs.retry_after_header is not None:
            header = self.knobs.retry_after_header
        return web.json_response(
            {"message": "Too many requests"}, status=429, headers={"Retry-After": header}
        )

    # -- admin endpoints -------------------------------------------------------------------------------
    async def _admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": self.system,
                "requests": dict(self.counters),
                "total_requests": sum(self.counters.values()),
                "statuses": dict(self.status_counters),
                "max_in_flight": self.max_in_flight,
                "max_queued": self.max_queued,
            }
        )

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.counters.clear()
        self.status_counters.clear()
        self.max_in_flight = 0
        self.max_queued = 0
        return web.json_response({"ok": True})

    async def _admin_get_knobs(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.knobs))

    async def _admin_set_knobs(self, request: web.Request) -> web.Response:
        changes = await request.json()
        try:
            self.knobs.update(changes)
        except ValueError as error:
            return web.json_response({"message": str(error)}, status=400)
        if "seed" in changes:
            self.random.seed(changes["seed"])
        if "workers" in changes and self._worker_free is not None:
            async with self._worker_free:
                self._worker_free.notify_all()  # more workers: the queue moves now
        return web.json_response(asdict(self.knobs))

    async def _admin_get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state_snapshot())

    async def _admin_set_state(self, request: web.Request) -> web.Response:
        try:
            self.apply_state_change(await request.json())
        except (ValueError, KeyError) as error:
            return web.json_response({"message": f"bad state change: {error}"}, status=400)
        return web.json_response({"ok": True})


class SandboxHandle:
    """Talks to a running sandbox server's admin endpoints, wherever it runs."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        # The product's one TLS context: httpx would otherwise make one per request, loading certifi's authorities
        # each time (about 40 ms of CPU), and a test makes hundreds of admin requests.
        response = httpx.request(
            method, f"{self.url}{ADMIN_PREFIX}/{path}", json=body, timeout=30, verify=verifying_context()
        )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "stats")

    def requests(self, endpoint: str) -> int:
        """How many requests reached ``endpoint`` (e.g. ``"PUT /REST/2.0/user/{id}"``)."""
        return int(self.stats()["requests"].get(endpoint, 0))

    def reset_counters(self) -> None:
        self._admin("POST", "reset")

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        return self._admin("POST", "knobs", changes)

    def state(self) -> dict[str, Any]:
        return self._admin("GET", "state")

    def change_state(self, change: dict[str, Any]) -> None:
        self._admin("POST", "state", change)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def devkit_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ if env is None else env)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


@dataclass
class DemoSetup:
    """What one job of the demo needs: sandbox servers (started) and environment variables pointing at them."""

    sandboxes: list[SandboxProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class ThreadedSandbox(SandboxHandle):
    """Runs a sandbox app on 127.0.0.1 in a background thread with its own event loop (for tests)."""

    def __init__(self, sandbox: SandboxApp, port: int = 0) -> None:
        self.sandbox = sandbox
        self._fixed_port = bool(port)
        self._port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name=f"sandbox-{sandbox.system}", daemon=True)
        super().__init__(f"http://127.0.0.1:{self._port}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.sandbox.app, access_log=None, shutdown_timeout=STOP_GRACE_SECONDS)
        self._loop.run_until_complete(self._runner.setup())
        for attempt in range(BIND_ATTEMPTS):
            site = web.TCPSite(self._runner, "127.0.0.1", self._port, backlog=1024)
            try:
                self._loop.run_until_complete(site.start())
                break
            except OSError as error:
                if self._fixed_port or error.errno != errno.EADDRINUSE or attempt == BIND_ATTEMPTS - 1:
                    self._error = error
                    self._ready.set()
                    self._loop.run_until_complete(self._runner.cleanup())
                    self._loop.close()
                    return
                self._port = free_port()  # taken since free_port() chose it: ask for another
                self.url = f"http://127.0.0.1:{self._port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> ThreadedSandbox:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the {self.sandbox.system} sandbox did not start")
        if self._error is not None:
            raise RuntimeError(f"the {self.sandbox.system} sandbox could not listen: {self._error}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> ThreadedSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxProcess(SandboxHandle):
    """Runs a sandbox in its own process (``python -m devkit.sandbox``), as the demo and benchmarks do,
    so that the server's CPU does not compete with the client being measured."""

    def __init__(self, system: str, args: list[str] | None = None, port: int = 0) -> None:
        self.system = system
        self._fixed_port = bool(port)
        self._port = port or free_port()
        self._args = args or []
        self._process: subprocess.Popen[bytes] | None = None
        # A file, not a pipe: a pipe nobody reads fills up and blocks the server.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        super().__init__(f"http://127.0.0.1:{self._port}")

    def start(self, timeout: float = 60) -> SandboxProcess:
        """Start the server (once: a running server is kept, so ``with`` on a started one does not leak it)."""
        if self._process is not None and self._process.poll() is None:
            return self
        for attempt in range(BIND_ATTEMPTS):
            error = self._start_once(timeout)
            if error is None:
                return self
            taken = "address already in use" in error.lower() or f"errno {errno.EADDRINUSE}" in error.lower()
            if self._fixed_port or not taken or attempt == BIND_ATTEMPTS - 1:
                raise RuntimeError(f"the {self.system} sandbox exited: {error}")
            # Another process took the port since free_port() chose it: ask for another one.
            self._port = free_port()
            self.url = f"http://127.0.0.1:{self._port}"
            self._stderr.seek(0)
            self._stderr.truncate()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> str | None:
        """Start the server; None once it answers, or its error output when it exited."""
        command = [
            sys.executable,
            "-m",
            "devkit.sandbox",
            self.system,
            "--port",
            str(self._port),
            *self._args,
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self._stderr, env=devkit_env(), cwd=REPO_ROOT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._stderr.seek(0)
                return self._stderr.read().decode(errors="replace")[-2000:].strip()
            try:
                self.stats()
                return None
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the {self.system} sandbox did not answer within {timeout} s")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._stderr.close()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(sandbox: SandboxApp, port: int) -> None:
    """Serve until interrupted (the command-line entry point)."""
    web.run_app(
        sandbox.app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=1024,
        shutdown_timeout=STOP_GRACE_SECONDS,
    )


@contextlib.contextmanager
def running(sandbox: SandboxApp) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(sandbox) as handle:
        yield handle


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
