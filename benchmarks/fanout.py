"""2. Fan-out: 1,000 chat calls through ``XAIHook.chat_many`` at concurrency 64, 50 ms server.

The ideal wall time is ``ceil(1000 / 64) x 50 ms``-ish; the target uses ``1000 / 64 x 50 ms``
(781 ms). The server is the minimal responder in its own process (answers after 50 ms with
``call_later``, so it never becomes the bottleneck); the bundled FastAPI server would need
~1-2 ms of CPU per request on the same two cores. For reference the same fan-out is run with
a bare ``httpx.AsyncClient`` + ``asyncio.Semaphore(64)``, and with the 64 connections split
over 4 clients (httpcore's pool bookkeeping is quadratic in its number of connections),
alternating with the hook.

Peak memory: the RSS high-water mark (``VmHWM``, reset before each hook round) minus the RSS
before the round, and ``tracemalloc``'s peak of Python allocations in one extra, untimed round.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import tracemalloc
from typing import Any

from benchmarks.common import (
    API_KEY,
    CHAT_BODY,
    CONN_ENV,
    Figure,
    apply_env,
    connection,
    median,
    peak_rss_bytes,
    reset_peak_rss,
    responder,
    rss_bytes,
)

REQUESTS = 1000
CONCURRENCY = 64
LATENCY = 0.050
IDEAL = REQUESTS / CONCURRENCY * LATENCY


def _bare(base_url: str, shards: int = 1) -> list[Any]:
    """Bare httpx fan-out; with ``shards`` > 1 the 64 connections are split over that many
    clients (a lane is taken from a queue per request), keeping each connection pool small."""
    import httpx

    async def main() -> list[Any]:
        per = CONCURRENCY // shards
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        clients = [
            httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) for _ in range(shards)
        ]
        lanes: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for i in range(CONCURRENCY):
            lanes.put_nowait(clients[i % shards])

        async def one() -> Any:
            client = await lanes.get()
            try:
                response = await client.post("chat/completions", json=CHAT_BODY)
                response.raise_for_status()
                return json.loads(response.content)
            finally:
                lanes.put_nowait(client)

        try:
            return list(await asyncio.gather(*(one() for _ in range(REQUESTS))))
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(main())


def measure(base_url: str, rounds: int) -> dict[str, Any]:
    from airflow_provider_xai.exceptions import XAIError
    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    hook = XAIHook()
    requests = [CHAT_BODY] * REQUESTS
    hook.chat_many(requests[:CONCURRENCY], max_concurrency=CONCURRENCY)  # warm imports and caches
    _bare(base_url)
    wall: dict[str, list[float]] = {"hook": [], "bare_httpx": [], "bare_httpx_4_pools": []}
    cpu: list[float] = []
    rss: list[int] = []
    errors = 0
    for r in range(rounds):
        order = list(wall)[r % 3 :] + list(wall)[: r % 3]
        for name in order:
            if name == "hook":
                before = rss_bytes()
                reset_peak_rss()
                t0, c0 = time.perf_counter(), time.process_time()
                results = hook.chat_many(requests, max_concurrency=CONCURRENCY)
                wall[name].append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                rss.append(peak_rss_bytes() - before)
                errors += sum(isinstance(x, XAIError) for x in results)
                assert len(results) == REQUESTS
            else:
                t0 = time.perf_counter()
                _bare(base_url, 4 if name == "bare_httpx_4_pools" else 1)
                wall[name].append(time.perf_counter() - t0)
    tracemalloc.start()
    hook.chat_many(requests, max_concurrency=CONCURRENCY)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"wall": wall, "cpu": cpu, "rss_increase": rss, "tracemalloc_peak": traced_peak, "errors": errors}


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else 3
    with responder(latency=LATENCY) as base_url:
        data = measure(base_url, rounds)
    hook_wall = median(data["wall"]["hook"])
    detail = {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "server_latency_s": LATENCY,
        "ideal_s": round(IDEAL, 4),
        "rounds": rounds,
        "hook_wall_s": [round(x, 3) for x in data["wall"]["hook"]],
        "bare_httpx_wall_s": [round(x, 3) for x in data["wall"]["bare_httpx"]],
        "hook_cpu_ms_per_request": round(median(data["cpu"]) / REQUESTS * 1e3, 2),
        "bare_over_ideal": round(median(data["wall"]["bare_httpx"]) / IDEAL, 3),
        "bare_httpx_4_pools_wall_s": [round(x, 3) for x in data["wall"]["bare_httpx_4_pools"]],
        "bare_4_pools_over_ideal": round(median(data["wall"]["bare_httpx_4_pools"]) / IDEAL, 3),
        "failed_items": data["errors"],
        "peak_rss_increase_mib": [round(x / 2**20, 1) for x in data["rss_increase"]],
        "tracemalloc_peak_mib": round(data["tracemalloc_peak"] / 2**20, 1),
    }
    server = "minimal asyncio responder, 50 ms (own process)"
    return [
        Figure(
            "2a_fanout_wall",
            "chat_many 1000 @64, wall / ideal (1000/64 x 50 ms)",
            hook_wall / IDEAL,
            1.3,
            server=server,
            detail=detail,
        ),
        Figure(
            "2c_fanout_bare_reference",
            "bare httpx.AsyncClient 1000 @64, wall / ideal (reference)",
            median(data["wall"]["bare_httpx"]) / IDEAL,
            None,
            server=server,
        ),
        Figure(
            "2d_fanout_bare_4_pools",
            "bare httpx, 64 connections split over 4 clients, wall / ideal (reference)",
            median(data["wall"]["bare_httpx_4_pools"]) / IDEAL,
            None,
            server=server,
        ),
        Figure(
            "2b_fanout_peak_rss",
            "chat_many 1000 @64, peak RSS increase",
            median(data["rss_increase"]) / 2**20,
            None,
            unit="MiB",
            server=server,
            detail={"tracemalloc_peak_mib": detail["tracemalloc_peak_mib"]},
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
