"""The adaptive limit of requests in flight against fixed ones, on stand-ins that cost what servers cost.

Each stand-in (``python -m devkit.sandbox <system>`` in its own process) serves with ``--workers`` workers, each
request holding one for ``--request-cost-ms`` (requests beyond the workers queue, as in front of an application
server's worker pool); half way through the run its workers are halved (load from elsewhere taking half the
server). The client is the shared HTTP layer (``ApiClient``) sending ``--requests`` GETs, all at once, its limit
of requests in flight either adaptive (ceiling ``--ceiling``) or fixed at 1, 2, 4, 8, 16 and 32 (the sweep).
The GETs go to a path no stand-in serves (a 404 after the worker's time), so every stand-in's server code (the
same ``devkit/sandbox/server.py``) is measured without its authentication. The physical limit is
requests x cost / workers, each half at its own worker count.

``python -m bench.adaptive [--systems rt,bakalari,portaildf] [--requests 800] [--workers 8] [--request-cost-ms 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import ratio, result_row, table, verdict
from devkit.sandbox.server import SandboxProcess
from sync_pipelines.core.http import ApiClient, ApiLimits

FIXED = (1, 2, 4, 8, 16, 32)
PATH = "bench/ping"  # answered 404 by every stand-in, after the worker's time


async def drive(
    url: str, handle: SandboxProcess, requests: int, limit: int, adaptive: bool, workers: int, timeout: float
) -> dict[str, Any]:
    limits = ApiLimits(
        max_concurrency=limit, adaptive_concurrency=adaptive, timeout_seconds=timeout, max_attempts=3
    )
    api = ApiClient("bench", url, limits, credential_variables="-")
    answered = 0
    halved = asyncio.Event()

    async def one(number: int) -> None:
        nonlocal answered
        await api.send("GET", f"{PATH}/{number}")
        answered += 1
        if answered == requests // 2 and not halved.is_set():
            halved.set()
            await asyncio.to_thread(handle.set_knobs, workers=max(1, workers // 2))

    async with api:
        began = time.perf_counter()
        results = await asyncio.gather(*(one(number) for number in range(requests)), return_exceptions=True)
        seconds = time.perf_counter() - began
    failed = sum(1 for result in results if isinstance(result, BaseException))
    return {
        "seconds": seconds,
        "failed": failed,
        "timeouts": api.stats.statuses.get("timed out", 0),
        "refused": api.stats.statuses.get("429", 0),
        "retries": api.retries,
        "sent": api.requests_made,
        "concurrency": api.concurrency.summary(),
    }


def run_system(
    system: str, requests: int, workers: int, cost_ms: float, ceiling: int, timeout: float
) -> list[dict[str, Any]]:
    close = ["--close-connection"] if system == "rt" else []
    args = ["--size", "10", "--workers", str(workers), "--request-cost-ms", str(cost_ms), *close]
    half = requests // 2
    limit_s = half * cost_ms / 1000 / workers + (requests - half) * cost_ms / 1000 / max(1, workers // 2)
    figures: dict[str, dict[str, Any]] = {}
    with SandboxProcess(system, args) as handle:
        for label, limit, adaptive in [
            *((f"fixed {n}", n, False) for n in FIXED),
            (f"adaptive (ceiling {ceiling})", ceiling, True),
        ]:
            handle.set_knobs(workers=workers)
            handle.reset_counters()
            figures[label] = asyncio.run(
                drive(handle.url, handle, requests, limit, adaptive, workers, timeout)
            )
            print(f"  {system} {label}: {figures[label]['seconds']:.2f} s", flush=True)
    fixed = {label: f for label, f in figures.items() if label.startswith("fixed")}
    best_label = min(fixed, key=lambda label: fixed[label]["seconds"])
    best = fixed[best_label]["seconds"]
    rows = []
    for label, f in figures.items():
        adaptive = label.startswith("adaptive")
        bad = f["timeouts"] + f["refused"] + f["failed"]
        target = ""
        if adaptive:
            met = f["seconds"] <= 1.2 * best and bad < 0.01 * requests
            target = f"<= 1.2x best fixed ({best_label}), < 1 % refused or timed out: {verdict(met)}"
        summary = f["concurrency"]
        rows.append(
            result_row(
                f"HTTP layer vs {system} stand-in",
                f"{label}; {workers} -> {max(1, workers // 2)} workers, {cost_ms:g} ms",
                records=requests,
                requests=f["sent"],
                sync_step_s=round(f["seconds"], 2),
                limit_s=round(limit_s, 2),
                ratio_to_limit=ratio(f["seconds"], limit_s),
                target=target,
                note=f"{ratio(f['seconds'], best)}x best fixed ({best_label}); timeouts {f['timeouts']}, 429s "
                f"{f['refused']}, retries {f['retries']}, failed {f['failed']}"
                + (
                    f"; limit {summary['lowest']}..{summary['highest']}, ended at {summary['limit']}; signals "
                    + ", ".join(f"{k} {v}" for k, v in summary["signals"].items())
                    if adaptive
                    else ""
                ),
            )
        )
    return rows


def run(
    systems: tuple[str, ...] = ("rt", "bakalari", "portaildf"),
    requests: int = 800,
    workers: int = 8,
    cost_ms: float = 20.0,
    ceiling: int = 32,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    rows = []
    for system in systems:
        rows += run_system(system, requests, workers, cost_ms, ceiling, timeout)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.adaptive", description=__doc__)
    parser.add_argument("--systems", default="rt,bakalari,portaildf")
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--request-cost-ms", type=float, default=20.0)
    parser.add_argument("--ceiling", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    rows = run(
        tuple(args.systems.split(",")),
        args.requests,
        args.workers,
        args.request_cost_ms,
        args.ceiling,
        args.timeout,
    )
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
