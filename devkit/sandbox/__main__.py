"""Command line: ``python -m devkit.sandbox {rt,bakalari,portaildf} --port 8081 --size 2000 --latency-ms 30``."""

from __future__ import annotations

import argparse

from devkit.sandbox.bakalari import BakalariSandbox
from devkit.sandbox.portaildf import PortailDfSandbox
from devkit.sandbox.rt import RequestTrackerSandbox
from devkit.sandbox.server import Knobs, free_port, serve_forever

SYSTEMS: dict[str, type] = {
    "rt": RequestTrackerSandbox,
    "bakalari": BakalariSandbox,
    "portaildf": PortailDfSandbox,
}


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
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--retry-after-seconds", type=float, default=1.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    knobs = Knobs(
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
