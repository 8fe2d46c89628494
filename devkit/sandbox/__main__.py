"""Command line: ``python -m devkit.sandbox {rt,bakalari,portaildf} --port 8081 --size 2000 --latency-ms 30``."""

from __future__ import annotations

import argparse
from typing import Any

from devkit.sandbox.bakalari import BakalariSandbox
from devkit.sandbox.portaildf import PortailDfSandbox
from devkit.sandbox.rt import REAL_RT_PACE, RequestTrackerSandbox
from devkit.sandbox.server import Knobs, free_port, serve_forever

SYSTEMS: dict[str, type] = {
    "rt": RequestTrackerSandbox,
    "bakalari": BakalariSandbox,
    "portaildf": PortailDfSandbox,
}


# The measured pace of the real servers (``--like-real``).
REAL_PACE: dict[str, dict[str, Any]] = {"rt": REAL_RT_PACE}


def sandbox_class(system: str) -> type:
    return SYSTEMS[system]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devkit.sandbox", description=__doc__)
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--size", type=int, default=100, help="how many sample records to seed")
    parser.add_argument("--seed", type=int, default=7, help="sample data seed")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument(
        "--request-cost-ms", type=float, default=None, help="server time per request, holding one worker"
    )
    parser.add_argument("--workers", type=int, default=None, help="requests served at once; the rest queue")
    parser.add_argument("--request-cpu", action="store_true", help="spend the request cost on the CPU")
    parser.add_argument("--close-connection", action="store_true", help="close every connection after it")
    parser.add_argument(
        "--like-real",
        action="store_true",
        help="the real server's pace where one was measured (rt: see docs/benchmarks.md); explicit knobs win",
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="in flight beyond this: 429")
    parser.add_argument("--retry-after-seconds", type=float, default=1.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    real = REAL_PACE.get(args.system, {}) if args.like_real else {}
    knobs = Knobs(
        request_cost_ms=args.request_cost_ms
        if args.request_cost_ms is not None
        else real.get("request_cost_ms", 0.0),
        workers=args.workers if args.workers is not None else real.get("workers"),
        request_cpu=args.request_cpu,
        close_connection=args.close_connection or bool(real.get("close_connection", False)),
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        max_concurrency=args.max_concurrency,
        retry_after_seconds=args.retry_after_seconds,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        malformed_rate=args.malformed_rate,
        seed=args.seed,
    )
    sandbox = sandbox_class(args.system).from_sample(size=args.size, seed=args.seed, knobs=knobs)
    if args.port == 0:
        args.port = free_port()
    print(f"{args.system} sandbox on http://127.0.0.1:{args.port}", flush=True)
    serve_forever(sandbox, args.port)


if __name__ == "__main__":
    main()
