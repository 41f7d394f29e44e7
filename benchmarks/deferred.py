"""6. Deferred polling: 500 ``XAIDeferredCompletionTrigger.run()`` generators on one event loop.

This is what the triggerer does: one asyncio loop runs every trigger's ``run()``. A ticker
coroutine sleeping 10 ms records the longest gap between its wake-ups (the longest time the
loop was blocked, plus the 10 ms); each trigger's event time is compared with the moment its
completion became ready on the server, against the poll interval.

The server is the minimal responder (own process) with time-based readiness like xAI's: each
deferred completion is ready a seeded 0.5-2.5 s after submission. The bundled FastAPI server
counts polls instead of time (``deferred_pending_polls``), so "ready" would only be defined
by the poll that found it, and at 500 polls/s on this machine its own CPU would be measured.
Readiness and pick-up times share ``CLOCK_MONOTONIC`` across processes (Linux).

Completions that became ready while the 500 requests were still being submitted (before the
triggers started) are timed from the triggers' start: no poller can see them earlier.
The trigger itself starts polling at a random point of its first interval and then polls at a
fixed rate, so 500 triggers deferred together do not all poll in the same loop iteration.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from benchmarks.common import CHAT_BODY, CONN_ENV, Figure, apply_env, connection, median, responder

TRIGGERS = 500
POLL_INTERVAL = 1.0
TICK = 0.010


async def _submit(n: int) -> list[str]:
    from airflow_provider_xai.hooks.xai import XAIHook

    hook = XAIHook()
    semaphore = asyncio.Semaphore(32)

    async def one() -> str:
        async with semaphore:
            return await hook.astart_deferred(CHAT_BODY)

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await hook.aclose()


async def _poll_all(ids: list[str]) -> dict[str, Any]:
    from airflow_provider_xai.triggers.deferred import XAIDeferredCompletionTrigger

    picked: dict[str, float] = {}
    statuses: dict[str, str] = {}
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now


    async def drive(request_id: str) -> None:
        trigger = XAIDeferredCompletionTrigger(request_id=request_id, poll_interval=POLL_INTERVAL)
        async for event in trigger.run():
            picked[request_id] = time.monotonic()
            statuses[request_id] = event.payload["status"]

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(TICK * 3)  # the ticker's first gaps are before any trigger starts
    started = time.monotonic()
    await asyncio.gather(*(drive(i) for i in ids))
    done.set()
    await tick
    return {"picked": picked, "statuses": statuses, "gaps": gaps, "started": started}


def measure(base_url: str) -> dict[str, Any]:
    import httpx

    os.environ[CONN_ENV] = json.dumps(connection(base_url))
    ids = asyncio.run(_submit(TRIGGERS))
    result = asyncio.run(_poll_all(ids))
    root = base_url.rsplit("/v1", 1)[0]
    served = httpx.get(f"{root}/_bench/deferred", timeout=30).json()
    delays = [
        result["picked"][i] - max(served[i]["ready_at"], result["started"]) for i in ids if i in result["picked"]
    ]
    return {**result, "delays": delays, "ids": ids}


def run(quick: bool = False) -> list[Figure]:
    with responder(ready_min=0.5, ready_max=2.5) as base_url:
        data = measure(base_url)
    gaps, delays = data["gaps"], data["delays"]
    ok = sum(s == "success" for s in data["statuses"].values())
    over = sum(d > POLL_INTERVAL for d in delays)
    detail = {
        "triggers": TRIGGERS,
        "poll_interval_s": POLL_INTERVAL,
        "ticker_interval_s": TICK,
        "succeeded": ok,
        "max_loop_gap_ms": round(max(gaps) * 1e3, 1),
        "p99_loop_gap_ms": round(sorted(gaps)[int(len(gaps) * 0.99)] * 1e3, 1),
        "gaps_over_100ms": sum(g > 0.1 for g in gaps),
        "pickup_delay_s_median": round(median(delays), 3),
        "pickup_delay_s_max": round(max(delays), 3),
        "picked_later_than_one_interval": over,
    }
    server = "minimal asyncio responder, time-based readiness (own process)"
    return [
        Figure(
            "6a_deferred_loop_gap",
            "500 deferred triggers on one loop: longest gap between 10 ms ticks",
            max(gaps) * 1e3,
            100.0,
            unit="ms",
            server=server,
            detail=detail,
        ),
        Figure(
            "6b_deferred_pickup",
            "slowest pick-up after the completion is ready (or the triggers start) / poll interval",
            max(delays) / POLL_INTERVAL,
            1.0,
            server=server,
            detail={"succeeded": ok, "picked_later_than_one_interval": over},
        ),
    ]


if __name__ == "__main__":
    apply_env()
    figures = run("--quick" in sys.argv)
    print(json.dumps([f.to_json() for f in figures]))
