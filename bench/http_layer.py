"""How many requests per second the shared HTTP layer gets from a sandbox with 20 ms latency and 16 slots.

The server's capacity is 16 / 0.02 s = 800 requests/s. The sandbox runs in its own process so its CPU does
not compete with the client being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from devkit.sandbox.rt import DEFAULT_TOKEN
from devkit.sandbox.sample_data import RT_USER_ID_BASE
from devkit.sandbox.server import SandboxProcess
from sync_pipelines.core.http import ApiClient, ApiLimits


async def drive(url: str, requests: int, concurrency: int) -> tuple[float, float, ApiClient]:
    """Seconds of wall time and of this process's CPU for ``requests`` GETs, and the client that sent them."""
    api = ApiClient(
        "RT",
        f"{url}/REST/2.0/",
        ApiLimits(max_concurrency=concurrency),
        "RT_TOKEN",
        secrets=[DEFAULT_TOKEN],
        headers={"Authorization": f"token {DEFAULT_TOKEN}"},
    )
    async with api:
        await asyncio.gather(*(api.request("GET", "user/14") for _ in range(concurrency)))  # warm the pool
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(api.request("GET", f"user/{RT_USER_ID_BASE + 1 + n % 50}") for n in range(requests))
        )
        return time.perf_counter() - started, time.process_time() - cpu_started, api


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--slots", type=int, default=16)
    args = parser.parse_args(argv)
    capacity = args.slots / (args.latency_ms / 1000)
    with SandboxProcess(
        "rt", ["--size", "60", "--latency-ms", str(args.latency_ms), "--max-concurrency", str(args.slots)]
    ) as sandbox:
        seconds, cpu_seconds, api = asyncio.run(drive(sandbox.url, args.requests, args.slots))
        refused = sandbox.stats()["statuses"].get("429", 0)
    rate = args.requests / seconds
    figures = {
        "requests": args.requests,
        "seconds": round(seconds, 2),
        "requests_per_second": round(rate),
        "capacity_per_second": round(capacity),
        "share_of_capacity": round(rate / capacity, 3),
        # The client's own CPU per request: what the HTTP layer costs, whatever else the machine is doing.
        "client_cpu_us_per_request": round(cpu_seconds / args.requests * 1e6),
        "refused_429": refused,
        "retries": api.retries,
    }
    print(
        f"HTTP layer: {args.requests} GETs in {seconds:.2f} s = {rate:.0f} requests/s against a sandbox with "
        f"{args.latency_ms:g} ms latency and {args.slots} slots (capacity {capacity:.0f}/s, "
        f"{rate / capacity:.0%} of it), client CPU {cpu_seconds / args.requests * 1e6:.0f} µs/request; 429s: {refused}, retries: {api.retries}"
    )
    return figures


if __name__ == "__main__":
    main()
