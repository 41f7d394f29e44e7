"""2. Fan-out: 1,000 chat calls through ``XAIHook.chat_many`` at concurrency 64, 50 ms server.

The ideal wall time is ``ceil(1000 / 64) x 50 ms``-ish; the target uses ``1000 / 64 x 50 ms``
(781 ms). The server is the minimal responder in its own process (answers after 50 ms with
``call_later``, so it never becomes the bottleneck); the bundled FastAPI server would need
~1-2 ms of CPU per request on the same two cores.

Bare ``httpx.AsyncClient`` fan-outs (``asyncio.Queue`` of 64 slots) run beside the hook as
references, set up the way ``chat_many`` runs, so the comparison is like for like:

* the same event loop implementation: one untimed ``chat_many`` call notes the class of its
  running loop (an httpx request event hook passed with ``client_kwargs=``), and every bare
  fan-out runs on a new loop of that class (uvloop's when installed), as ``chat_many`` runs
  each fan-out on a new loop;
* the same connection reuse: each fan-out opens its clients and closes them at the end, with
  64 keep-alive connections in all (``max_keepalive_connections`` = ``max_connections``), and
  all clients share one verifying SSL context built once per process, as the hook's do (httpx
  would otherwise load the CA bundle for each client); pool settings not named here are
  httpx's defaults, as the hook leaves them. The responder counts the connections each
  contender opens in each round (reported; 64 when every connection is reused throughout,
  more when a slow round lets idle ones pass httpx's 5 s keep-alive expiry);
* 2c keeps the 64 connections in one client, 2d splits them over 4 clients of 16, the split
  ``chat_many`` makes at this width (httpcore's pool bookkeeping is quadratic in its number of
  connections).

Each contender runs once untimed to warm up, then the three alternate, rotating the order every
round, with a ``gc.collect()`` before each. 2e is the median over rounds of hook wall / the
faster bare fan-out of the same round: the hook's overhead over the best of these hand-written
httpx fan-outs (the per-round CPU-time ratios are in its details).

Peak memory: the RSS high-water mark (``VmHWM``, reset before each hook round) minus the RSS
before the round, and ``tracemalloc``'s peak of Python allocations in one extra, untimed round.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import ssl
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    API_KEY,
    CHAT_BODY,
    CONN_ENV,
    Figure,
    alternate,
    apply_env,
    connection,
    median,
    peak_rss_bytes,
    ratios,
    reset_peak_rss,
    responder,
    rss_bytes,
)

REQUESTS = 1000
CONCURRENCY = 64
LATENCY = 0.050
IDEAL = REQUESTS / CONCURRENCY * LATENCY
BARE_POOLS = {"bare_httpx": 1, "bare_httpx_4_pools": 4}  # contender -> clients sharing the 64


def _chat_many_loop() -> type[asyncio.AbstractEventLoop]:
    """The class of the event loop ``chat_many`` runs its requests on (public API only)."""
    from airflow_provider_xai.hooks.xai import XAIHook

    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def note(request: Any) -> None:
        seen.append(type(asyncio.get_running_loop()))

    hook = XAIHook(client_kwargs={"event_hooks": {"request": [note]}})
    hook.chat_many([CHAT_BODY], max_concurrency=1)
    if not seen:
        raise RuntimeError("chat_many sent no request through the client_kwargs event hook")
    return seen[0]


def _bare(
    base_url: str,
    pools: int,
    loop_class: type[asyncio.AbstractEventLoop],
    ssl_context: ssl.SSLContext,
    count: int = REQUESTS,
) -> None:
    """Bare httpx fan-out of ``count`` requests on a new ``loop_class`` loop, 64 in flight; the
    64 connections are split over ``pools`` clients (a slot is taken from a queue per request)."""
    import httpx

    async def main() -> None:
        per = CONCURRENCY // pools
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        clients = [
            httpx.AsyncClient(
                base_url=base_url, headers=headers, limits=limits, verify=ssl_context, timeout=600
            )
            for _ in range(pools)
        ]
        slots: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for i in range(CONCURRENCY):
            slots.put_nowait(clients[i % pools])

        async def one() -> Any:
            client = await slots.get()
            try:
                response = await client.post("chat/completions", json=CHAT_BODY)
                response.raise_for_status()
                return json.loads(response.content)
            finally:
                slots.put_nowait(client)

        try:
            results = await asyncio.gather(*(one() for _ in range(count)))
        finally:
            for client in clients:
                await client.aclose()
        assert len(results) == count

    with asyncio.Runner(loop_factory=loop_class) as runner:
        runner.run(main())


def _accepted(root: str) -> int:
    """Connections the responder has accepted so far (this query's own included)."""
    import httpx

    return int(httpx.get(f"{root}/_bench/connections", timeout=30).json()["accepted"])


def measure(base_url: str, rounds: int) -> dict[str, Any]:
    import httpx

    from airflow_provider_xai.exceptions import XAIError
    from airflow_provider_xai.hooks.xai import XAIHook

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    root = base_url.rsplit("/v1", 1)[0]
    loop_class = _chat_many_loop()
    ssl_context = httpx.create_ssl_context()  # one per process, like the hook's clients
    hook = XAIHook()
    requests = [CHAT_BODY] * REQUESTS
    rss: list[int] = []
    errors = 0

    def via_hook() -> None:
        nonlocal errors
        before = rss_bytes()
        reset_peak_rss()
        results = hook.chat_many(requests, max_concurrency=CONCURRENCY)
        rss.append(peak_rss_bytes() - before)
        errors += sum(isinstance(x, XAIError) for x in results)
        assert len(results) == REQUESTS

    def via_bare(pools: int) -> Callable[[], None]:
        return lambda: _bare(base_url, pools, loop_class, ssl_context)

    work = {"hook": via_hook, **{name: via_bare(pools) for name, pools in BARE_POOLS.items()}}
    cpu: dict[str, list[float]] = {name: [] for name in work}
    opened: dict[str, list[int]] = {name: [] for name in work}

    def timed(name: str) -> Callable[[], float]:
        """Run one contender's fan-out; note its CPU time and the connections it opened."""

        def run() -> float:
            gc.collect()  # nobody collects the previous contender's garbage inside its timing
            before = _accepted(root)
            t0, c0 = time.perf_counter(), time.process_time()
            work[name]()
            wall = time.perf_counter() - t0
            cpu[name].append(time.process_time() - c0)
            opened[name].append(_accepted(root) - before - 1)  # minus the second query's own
            return wall

        return run

    # Warm every contender once, untimed (imports, code paths, caches).
    hook.chat_many(requests[:CONCURRENCY], max_concurrency=CONCURRENCY)
    for pools in BARE_POOLS.values():
        _bare(base_url, pools, loop_class, ssl_context, count=CONCURRENCY)
    wall = alternate(rounds, {name: timed(name) for name in work})
    tracemalloc.start()
    hook.chat_many(requests, max_concurrency=CONCURRENCY)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_increase": rss,
        "tracemalloc_peak": traced_peak,
        "errors": errors,
        "opened": opened,
        "loop": f"{loop_class.__module__}.{loop_class.__qualname__}",
    }


def run(quick: bool = False) -> list[Figure]:
    rounds = 2 if quick else 5
    with responder(latency=LATENCY) as base_url:
        data = measure(base_url, rounds)
    wall = data["wall"]
    best = [min(runs) for runs in zip(*(wall[name] for name in BARE_POOLS), strict=True)]
    overhead = ratios(wall["hook"], best)
    cpu = data["cpu"]
    best_cpu = [min(runs) for runs in zip(*(cpu[name] for name in BARE_POOLS), strict=True)]
    detail = {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "server_latency_s": LATENCY,
        "ideal_s": round(IDEAL, 4),
        "rounds": rounds,
        "event_loop": data["loop"],
        "connections_opened_per_round": data["opened"],
        "hook_wall_s": [round(x, 3) for x in wall["hook"]],
        "bare_httpx_wall_s": [round(x, 3) for x in wall["bare_httpx"]],
        "bare_httpx_4_pools_wall_s": [round(x, 3) for x in wall["bare_httpx_4_pools"]],
        "cpu_ms_per_request": {n: round(median(c) / REQUESTS * 1e3, 2) for n, c in cpu.items()},
        "failed_items": data["errors"],
        "peak_rss_increase_mib": [round(x / 2**20, 1) for x in data["rss_increase"]],
        "tracemalloc_peak_mib": round(data["tracemalloc_peak"] / 2**20, 1),
    }
    server = "minimal asyncio responder, 50 ms (own process)"
    return [
        Figure(
            "2a_fanout_wall",
            "chat_many 1000 @64, wall / ideal (1000/64 x 50 ms)",
            median(wall["hook"]) / IDEAL,
            1.3,
            server=server,
            detail=detail,
        ),
        Figure(
            "2c_fanout_bare_reference",
            "bare httpx.AsyncClient, 64 connections, chat_many's loop, wall / ideal (reference)",
            median(wall["bare_httpx"]) / IDEAL,
            None,
            server=server,
        ),
        Figure(
            "2d_fanout_bare_4_pools",
            "bare httpx, 64 connections over 4 clients, chat_many's loop, wall / ideal (reference)",
            median(wall["bare_httpx_4_pools"]) / IDEAL,
            None,
            server=server,
        ),
        Figure(
            "2e_fanout_hook_vs_best_bare",
            "chat_many wall / faster bare httpx fan-out (2c, 2d) of the same round",
            median(overhead),
            None,
            server=server,
            detail={
                "ratio_runs": [round(x, 3) for x in overhead],
                "cpu_ratio_runs": [round(x, 3) for x in ratios(cpu["hook"], best_cpu)],
                "best_bare": [min((wall[name][r], name) for name in BARE_POOLS)[1] for r in range(rounds)],
            },
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
