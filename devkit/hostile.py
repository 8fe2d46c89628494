"""A hostile stand-in on loopback: answers no real server should give, for the HTTP layer's limits to be tested.

Every behaviour is a path prefix, so one server serves them all and a client's base URL picks one
(``http://127.0.0.1:<port>/nested/``); whatever path follows is accepted, with any method:

* ``json/``: a small, valid Portail DF-shaped page (a baseline);
* ``huge/``: a 200 JSON answer of ``huge_bytes`` (100 MB), streamed in 64 KB chunks without a length, never held
  in memory; ``huge-declared/``: the same with its ``Content-Length``;
* ``gzip-bomb/``: ``Content-Encoding: gzip``, about 1 MB on the wire expanding to ``bomb_bytes`` (1 GiB) of JSON;
  compressed once, then streamed from that copy (deflate cannot beat ~1:1030, so 1 GiB needs ~1 MB);
* ``nested/``: ``[[[[...]]]]`` ``nesting`` (100,000) deep; ``big-number/``: a record whose number has ``digits``
  (10,000) digits;
* ``retry-after-nan/``: 429 with ``Retry-After: nan``, forever; ``429/``: 429 with ``Retry-After:
  <retry_after>``, forever;
* ``echo-headers/``: 400 whose JSON body echoes the request's headers (``Authorization`` included), as a proxy's
  debug page may;
* ``by-email/``: a Portail DF lookup (``?email=``) answered by the email's first word: ``nested...``,
  ``number...``, ``huge...``, ``bomb...`` and ``echo...`` get the answers above, any other email its own valid
  record. That is how one run meets one hostile answer among good ones;
* ``api/3/user`` under any of them answers the same way (a Bakaláři student's reads).

``python -m devkit.hostile measure`` prints the peak memory of a client reading the 100 MB answer and the gzip
bomb, for the code under ``--code-root`` (this tree by default; a ``git worktree`` of an older commit to compare).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import zlib
from functools import cache
from typing import Any

from aiohttp import web

from devkit.sandbox.server import REPO_ROOT, SandboxApp, ThreadedSandbox

CHUNK = 64 * 1024
HUGE_BYTES = 100 * 1000 * 1000
BOMB_BYTES = 1 << 30
NESTING = 100_000
DIGITS = 10_000


@cache
def gzip_bomb(size: int) -> bytes:
    """``{"results": ["000...0"]}`` of ``size`` bytes, gzip-compressed (level 9), built a megabyte at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head, tail = b'{"results": ["', b'"]}'
    parts = [compressor.compress(head)]
    block = b"0" * (1 << 20)
    left = size - len(head) - len(tail)
    while left > 0:
        piece = block if left >= len(block) else block[:left]
        parts.append(compressor.compress(piece))
        left -= len(piece)
    parts.append(compressor.compress(tail))
    parts.append(compressor.flush())
    return b"".join(parts)


class HostileServer(SandboxApp):
    system = "hostile"

    def __init__(
        self,
        *,
        huge_bytes: int = HUGE_BYTES,
        bomb_bytes: int = BOMB_BYTES,
        nesting: int = NESTING,
        digits: int = DIGITS,
        retry_after: str = "5",
    ) -> None:
        self.huge_bytes = huge_bytes
        self.bomb_bytes = bomb_bytes
        self.nesting = nesting
        self.digits = digits
        self.retry_after = retry_after
        self.sent_bytes = 0  # bytes of bodies written, compressed as sent
        super().__init__()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/{behaviour}/{tail:.*}", self.answer)

    def state_snapshot(self) -> dict[str, Any]:
        return {"sent_bytes": self.sent_bytes}

    def apply_state_change(self, change: dict[str, Any]) -> None:
        for name in ("huge_bytes", "bomb_bytes", "nesting", "digits", "retry_after"):
            if name in change:
                setattr(self, name, change[name])

    async def answer(self, request: web.Request) -> web.StreamResponse:
        behaviour = request.match_info["behaviour"]
        if behaviour == "by-email":
            email = request.query.get("email", "")
            first = email.split("@")[0]
            for prefix, chosen in (
                ("nested", "nested"),
                ("number", "big-number"),
                ("huge", "huge"),
                ("bomb", "gzip-bomb"),
                ("echo", "echo-headers"),
            ):
                if first.startswith(prefix):
                    behaviour = chosen
                    break
            else:
                return web.json_response({"results": [_record(email)], "next": None})
        handler = getattr(self, "_" + behaviour.replace("-", "_"), None)
        if handler is None:
            return web.json_response({"message": f"no behaviour {behaviour!r}"}, status=404)
        return await handler(request)

    async def _json(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"results": [_record(request.query.get("email", "a@b.fr"))], "next": None})

    async def _huge(self, request: web.Request, declared: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declared:
            response.content_length = self.huge_bytes
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        head, tail = b'{"results": ["', b'"]}'
        await self._write(response, head)
        block = b"a" * CHUNK
        left = self.huge_bytes - len(head) - len(tail)
        try:
            while left > 0:
                piece = block if left >= CHUNK else block[:left]
                await self._write(response, piece)
                left -= len(piece)
            await self._write(response, tail)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading: what a bounded client does
        return response

    async def _huge_declared(self, request: web.Request) -> web.StreamResponse:
        return await self._huge(request, declared=True)

    async def _gzip_bomb(self, request: web.Request) -> web.StreamResponse:
        body = gzip_bomb(self.bomb_bytes)
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for start in range(0, len(body), CHUNK):
                await self._write(response, body[start : start + CHUNK])
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        await response.write(data)
        self.sent_bytes += len(data)

    async def _nested(self, request: web.Request) -> web.StreamResponse:
        text = "[" * self.nesting + "]" * self.nesting
        return web.Response(text=text, content_type="application/json")

    async def _big_number(self, request: web.Request) -> web.StreamResponse:
        number = "1" + "0" * (self.digits - 1)
        email = request.query.get("email", "a@b.fr")
        text = '{"results": [{"email": %s, "id_user": %s, "exterieur": true, "gestionnaire": false}], "next": null}'
        return web.Response(text=text % (json.dumps(email), number), content_type="application/json")

    async def _retry_after_nan(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"message": "Too many requests"}, status=429, headers={"Retry-After": "nan"})

    async def _429(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"message": "Too many requests"}, status=429, headers={"Retry-After": self.retry_after}
        )

    async def _echo_headers(self, request: web.Request) -> web.StreamResponse:
        # The credential first, as a proxy's debug page may show it: a cut excerpt would still hold it whole.
        authorization = request.headers.get("Authorization")
        echoed = {"authorization": authorization, "headers": dict(request.headers)}
        return web.json_response({"message": f"bad request with {authorization}", **echoed}, status=400)


def _record(email: str) -> dict[str, Any]:
    return {"email": email, "id_user": 1, "exterieur": True, "gestionnaire": False}


# -- measuring a client's peak memory --------------------------------------------------------------------------
_MEASURE = r"""
import asyncio, json, resource, sys, time
from sync_pipelines.core.http import ApiClient, ApiLimits

async def main(url):
    async with ApiClient("Hostile", url, ApiLimits(max_attempts=1, timeout_seconds=600), "HOSTILE") as api:
        started = time.monotonic()
        try:
            status, body = await api.request_json("GET", "page")
            outcome = f"read: HTTP {status}, {len(json.dumps(body))} characters of JSON"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        return outcome, time.monotonic() - started

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome, seconds = asyncio.run(main(sys.argv[1]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome[:300], "seconds": round(seconds, 2),
                  "baseline_mb": round(before / 1024, 1), "peak_mb": round(peak / 1024, 1)}))
"""


def measure(code_root: str, url: str) -> dict[str, Any]:
    """Peak RSS of a fresh process whose client (the code under ``code_root``) reads one answer from ``url``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code_root, str(REPO_ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, url],
        env=env,
        cwd=code_root,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return {"outcome": f"process failed ({done.returncode}): {done.stderr.strip()[-500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["measure", "serve"])
    parser.add_argument(
        "--code-root", default=str(REPO_ROOT), help="the tree whose sync_pipelines is measured"
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = HostileServer()
    if args.command == "serve":
        with ThreadedSandbox(server, args.port) as handle:
            print(handle.url, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return
    gzip_bomb(server.bomb_bytes)  # compressed before the clock starts
    with ThreadedSandbox(server) as handle:
        for behaviour in ("json", "huge", "huge-declared", "gzip-bomb"):
            result = measure(args.code_root, f"{handle.url}/{behaviour}/")
            print(json.dumps({"answer": behaviour, "code": args.code_root, **result}), flush=True)


if __name__ == "__main__":
    main()
